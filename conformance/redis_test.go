package conformance_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
)

// TestRedis: the service and its store.
//   - outage: under load, Redis goes away for 1.5 s. The API answers 503
//     (never a 202 for a message it could not store) and recovers by
//     itself; every acknowledged message is delivered exactly once.
//   - restart-empty: Redis comes back without its data (no stream, no
//     consumer group, no records). The service recovers without a restart:
//     new messages are accepted and sent.
//   - cut: the network between instance 0 and Redis is cut. Instance 0
//     answers 503 and is not ready; instance 1 keeps accepting and
//     delivering. After the cut heals instance 0 serves again.
func TestRedis(t *testing.T) {
	env := conformance.New(t, conformance.Options{MaxAttempts: 10})
	c := conformance.NewClient(env)

	t.Run("outage", func(t *testing.T) {
		l := startLoad(t.Context(), env, c, "outage", 4, 10*time.Millisecond)
		sleep(t, 500*time.Millisecond)
		conformance.Control(t, "stop redis", env.StopRedis)
		down := time.Now()
		sleep(t, 1500*time.Millisecond)
		conformance.Control(t, "start redis", env.StartRedis)
		outage := time.Since(down)
		recovered := waitAccepting(t, c, 0, 30*time.Second)
		sleep(t, 500*time.Millisecond)
		l.stop()
		ids, codes, errs := l.snapshot()
		for code, n := range codes {
			if code != http.StatusAccepted && code != http.StatusServiceUnavailable {
				t.Errorf("%d answers %d: only 202 and 503 are acceptable during an outage", n, code)
			}
		}
		// A request may ride out a short outage (and answer 202 once its
		// message is stored) or answer 503; restart-empty checks the 503.
		if _, err := c.Await(t.Context(), ids, 60*time.Second, sent); err != nil {
			t.Fatal(err)
		}
		ledger := readLedger(t, env)
		once := checkExactlyOnce(t, ledger, ids)
		t.Logf("redis outage [%s]: Redis down %s under load; answers %v, %d transport errors; accepting again %s after Redis returned; %d acknowledged, %d delivered exactly once, %d duplicates",
			env.Backend(), outage.Round(time.Millisecond), codes, errs, recovered.Round(time.Millisecond), len(ids), once, conformance.Duplicates(ledger))
	})

	t.Run("restart-empty", func(t *testing.T) {
		conformance.Control(t, "stop redis", env.StopRedis)
		r, err := c.Send(t.Context(), 0, conformance.Order(conformance.OpenID("empty", 0)), "")
		if err != nil || r.Code != http.StatusServiceUnavailable {
			t.Errorf("while Redis is down: %v %d %s, want 503", err, r.Code, r.Body)
		}
		conformance.Control(t, "start redis", env.StartRedis)
		conformance.Control(t, "flush redis", env.FlushRedis)
		back := time.Now()
		var id string
		if !conformance.Eventually(t.Context(), 30*time.Second, func(ctx context.Context) bool {
			r, err := c.Send(ctx, 1%env.Instances(), conformance.Order(conformance.OpenID("empty", 1)), "")
			if err != nil || r.Code != http.StatusAccepted {
				return false
			}
			a, err := r.Accepted()
			id = a.ID
			return err == nil
		}) {
			t.Fatal("the service did not accept messages within 30 s of Redis coming back empty")
		}
		accepting := time.Since(back)
		if _, err := c.Await(t.Context(), []string{id}, 30*time.Second, sent); err != nil {
			t.Fatalf("after an empty restart: %v", err)
		}
		t.Logf("redis restart-empty [%s]: accepting %s after Redis came back empty, sent %s after, without restarting wxpushd",
			env.Backend(), accepting.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	})

	t.Run("cut", func(t *testing.T) {
		if env.Instances() < 2 {
			t.Skip("needs two instances")
		}
		conformance.Control(t, "cut instance 0 from redis", func(ctx context.Context) error { return env.CutRedis(ctx, 0) })
		cut := time.Now()
		if !conformance.Eventually(t.Context(), 30*time.Second, func(ctx context.Context) bool { return !c.Ready(ctx, 0) }) {
			t.Error("instance 0 still ready 30 s after losing Redis")
		}
		r, err := c.Send(t.Context(), 0, conformance.Order(conformance.OpenID("cut", 0)), "")
		if err == nil && r.Code == http.StatusAccepted {
			t.Errorf("instance 0 acknowledged a message it cannot store: %s", r.Body)
		}
		var ids []string
		for n := range 20 {
			r, err := c.Send(t.Context(), 1, conformance.Order(conformance.OpenID("cut", 1000+n)), "")
			if err != nil || r.Code != http.StatusAccepted {
				t.Fatalf("instance 1 during the cut: %v %d %s", err, r.Code, r.Body)
			}
			a, _ := r.Accepted()
			ids = append(ids, a.ID)
		}
		if _, err := c.Await(t.Context(), ids, 30*time.Second, sent); err != nil {
			t.Fatalf("instance 1 during the cut: %v", err)
		}
		conformance.Control(t, "restore", func(ctx context.Context) error { return env.RestoreRedis(ctx, 0) })
		healed := time.Now()
		recovered := waitAccepting(t, c, 0, 90*time.Second)
		for n := range 10 {
			r, err := c.Send(t.Context(), 0, conformance.Order(conformance.OpenID("cut", 2000+n)), "")
			if err != nil || r.Code != http.StatusAccepted {
				t.Fatalf("instance 0 after the cut: %v %d %s", err, r.Code, r.Body)
			}
			a, _ := r.Accepted()
			ids = append(ids, a.ID)
		}
		if _, err := c.Await(t.Context(), ids, 30*time.Second, sent); err != nil {
			t.Fatal(err)
		}
		ledger := readLedger(t, env)
		once := checkExactlyOnce(t, ledger, ids)
		t.Logf("redis cut [%s]: instance 0 cut from Redis for %s (503, not ready) while instance 1 delivered 20; instance 0 accepting %s after the network healed; %d delivered exactly once",
			env.Backend(), healed.Sub(cut).Round(time.Millisecond), recovered.Round(time.Millisecond), once)
	})
}

// waitAccepting waits until instance i is ready again and returns how long it took.
func waitAccepting(t *testing.T, c *conformance.Client, i int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if !conformance.Eventually(t.Context(), within, func(ctx context.Context) bool { return c.Ready(ctx, i) }) {
		t.Fatalf("instance %d not ready %s after Redis came back (or the network to it healed)", i, within)
	}
	return time.Since(start)
}
