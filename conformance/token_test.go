package conformance_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/mockwx"
)

// TestToken: N instances share one access token per app. Timeline, with a
// 3 s token lifetime: load runs for 5 s over both instances; for the first
// 2 s the mock answers 40001 to 10% of sends (a revocation storm: the
// instances must refresh once, compare-and-delete, not stampede); at 2.5 s
// every token of the app is expired at once (a 42001 storm). Token calls
// stay about one per lifetime across the instances, and every message is
// delivered exactly once.
func TestToken(t *testing.T) {
	const lifetime = 3
	for _, mode := range []string{"stable", "classic"} {
		t.Run(mode, func(t *testing.T) {
			env := conformance.New(t, conformance.Options{TokenMode: mode, TokenExpiresIn: lifetime, MaxAttempts: 10})
			c := conformance.NewClient(env)
			p := 0.1
			conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, ErrCode: 40001, Probability: &p, ForMS: 2000})

			start := time.Now()
			l := startLoad(t.Context(), env, c, "token"+mode, 4, 15*time.Millisecond)
			sleep(t, 2500*time.Millisecond)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			expired, err := env.Mock().ExpireTokens(ctx, env.App().AppID)
			cancel()
			if err != nil {
				t.Fatalf("expire tokens: %v", err)
			}
			sleep(t, 2500*time.Millisecond)
			l.stop()
			ids, codes, errs := l.snapshot()
			if len(ids) == 0 {
				t.Fatalf("nothing acknowledged (answers %v, transport errors %d)", codes, errs)
			}
			if _, err := c.Await(t.Context(), ids, 60*time.Second, sent); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			st := stats(t, env)
			ledger := readLedger(t, env)
			once := checkExactlyOnce(t, ledger, ids)

			lifetimes := elapsed.Seconds() / lifetime
			// One fetch per lifetime, refreshed ahead (so up to two), plus the
			// refreshes the two storms force.
			bound := int64(math.Ceil(elapsed.Seconds()/(lifetime/2.0))) + 8
			if st.TokenCalls > bound {
				t.Errorf("token calls %d over %s: more than %d (about one per %d s lifetime across %d instances, plus the storms)",
					st.TokenCalls, elapsed.Round(time.Millisecond), bound, lifetime, env.Instances())
			}
			t.Logf("token %s [%s]: %d instances, %d messages delivered exactly once of %d, token calls %d in %s = %.2f per app per %ds lifetime (bound %d), 40001 answered %d, tokens expired %d, 42001 answered %d",
				mode, env.Backend(), env.Instances(), once, len(ids), st.TokenCalls, elapsed.Round(time.Millisecond),
				float64(st.TokenCalls)/lifetimes, lifetime, bound, st.ByErrcode["40001"], expired, st.ByErrcode["42001"])
		})
	}
	t.Run("budget-guard", func(t *testing.T) {
		t.Skip("the daily token budget guard (WXPUSH_TOKEN_DAILY_BUDGET) is not reachable black-box in a short run: it needs a budget below the calls a test can make, which Options does not expose yet")
	})
}
