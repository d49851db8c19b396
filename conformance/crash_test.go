package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/mockwx"
)

// TestCrash: kill -9 an instance at random (seeded) moments under load,
// several times, and start it again. Sends are slowed a little so kills
// land mid-send. Timeline per round: load keeps running; after a random
// 300-900 ms a random instance is killed; after another 200-600 ms it is
// started again. Every message the API acknowledged ends sent and reached
// the user exactly once (the ledger); nothing anywhere is delivered twice.
func TestCrash(t *testing.T) {
	const rounds = 3
	s := seed(t)
	rng := newRand(s)
	env := conformance.New(t, conformance.Options{Visibility: 2 * time.Second, MaxAttempts: 10})
	c := conformance.NewClient(env)
	lo, hi := 5, 40
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Latency: &mockwx.Latency{MinMS: &lo, MaxMS: &hi}})

	start := time.Now()
	l := startLoad(t.Context(), env, c, "crash", 4, 10*time.Millisecond)
	var kills []string
	for range rounds {
		sleep(t, time.Duration(300+rng.IntN(600))*time.Millisecond)
		victim := rng.IntN(env.Instances())
		at := time.Since(start).Round(time.Millisecond)
		conformance.Control(t, "kill", func(ctx context.Context) error { return env.Kill(ctx, victim) })
		down := time.Duration(200+rng.IntN(400)) * time.Millisecond
		sleep(t, down)
		conformance.Control(t, "start", func(ctx context.Context) error { return env.Start(ctx, victim) })
		kills = append(kills, "#"+itoa(victim)+"@"+at.String())
	}
	sleep(t, 500*time.Millisecond)
	l.stop()
	ids, codes, errs := l.snapshot()
	if len(ids) == 0 {
		t.Fatalf("nothing acknowledged (answers %v, transport errors %d)", codes, errs)
	}
	drainStart := time.Now()
	if _, err := c.Await(t.Context(), ids, 90*time.Second, sent); err != nil {
		t.Fatal(err)
	}
	drain := time.Since(drainStart)
	ledger := readLedger(t, env)
	once := checkExactlyOnce(t, ledger, ids)
	dups := conformance.Duplicates(ledger)
	if dups != 0 {
		t.Errorf("%d client_msg_ids delivered more than once", dups)
	}
	absorbed := 0
	for _, s := range ledger {
		absorbed += s.Deduplicated
	}
	t.Logf("crash [%s]: seed %d, %d kill -9 (%v), %d acknowledged, %d delivered exactly once, %d duplicates, %d resends absorbed by client_msg_id, %d requests refused by a dead instance, drained in %s",
		env.Backend(), s, rounds, kills, len(ids), once, dups, absorbed, errs, drain.Round(time.Millisecond))
}
