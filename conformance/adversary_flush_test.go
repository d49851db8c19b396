package conformance_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
)

// TestAdversaryStoreFlush: under load, Redis loses every key of the service
// while every connection stays up (FLUSHALL; a failover to an empty replica
// looks the same). What was stored before is gone — that cannot be undone
// — but it must not go unnoticed: every instance raises the store-reset
// alarm (wxpush_store_resets_total goes up, /readyz names the reset in its
// body and stays 200), and the deployment recovers by itself: messages sent
// after the alarm are delivered exactly once and idempotency keys work
// again. Needs FlushRedis: skips on an external deployment.
func TestAdversaryStoreFlush(t *testing.T) {
	env := conformance.New(t, conformance.Options{})
	if env.Backend() == "external" {
		t.Skip("adversary store-flush: needs FlushRedis, a control operation an external deployment does not offer")
	}
	c := conformance.NewClient(env)
	n := env.Instances()
	base := make([]float64, n)
	for i := range n {
		base[i] = storeResets(t, c, i)
	}

	// Load, until a few messages went through every instance: by then
	// each has checked the store epoch more than once.
	l := startLoad(t.Context(), env, c, "flush", 4, 10*time.Millisecond)
	if !conformance.Eventually(t.Context(), 30*time.Second, func(ctx context.Context) bool {
		ids, _, _ := l.snapshot()
		return len(ids) >= 10*n
	}) {
		l.stop()
		t.Fatal("the load was not accepted within 30 s")
	}
	warm, _, _ := l.snapshot()
	if _, err := c.Await(t.Context(), warm[:10*n], 30*time.Second, sent); err != nil {
		l.stop()
		t.Fatal(err)
	}
	before, _, _ := l.snapshot()

	conformance.Control(t, "flush redis", env.FlushRedis)
	flushed := time.Now()
	alarmed := make([]time.Duration, n)
	resets := make([]float64, n)
	warned := 0
	for i := range n {
		var body string
		ok := conformance.Eventually(t.Context(), 30*time.Second, func(ctx context.Context) bool {
			r, err := c.Do(ctx, i, http.MethodGet, "/readyz", nil, nil)
			if err != nil {
				return false
			}
			body = fmt.Sprintf("%d %s", r.Code, r.Body)
			return r.Code == http.StatusOK && strings.Contains(string(r.Body), "store_reset")
		})
		if !ok {
			t.Errorf("instance %d: no store-reset warning in /readyz within 30 s of the flush (last answer: %s)", i, body)
			continue
		}
		alarmed[i] = time.Since(flushed)
		warned++
		resets[i] = storeResets(t, c, i) - base[i]
		if resets[i] < 1 {
			t.Errorf("instance %d: wxpush_store_resets_total went up by %v, want at least 1", i, resets[i])
		}
	}
	l.stop()
	acked, codes, _ := l.snapshot()

	// Recovery: new messages over every instance, each delivered once; an
	// idempotency key is remembered again.
	var ids []string
	for k := range 10 * n {
		r, err := c.Send(t.Context(), k%n, conformance.Order(conformance.OpenID("flush-after", k)), "")
		if err != nil || r.Code != http.StatusAccepted {
			t.Fatalf("after the flush, send %d to instance %d: %v %d %s", k, k%n, err, r.Code, r.Body)
		}
		a, _ := r.Accepted()
		ids = append(ids, a.ID)
	}
	key := "flush-key-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	first, err := c.Send(t.Context(), 0, conformance.Order(conformance.OpenID("flush-key", 0)), key)
	if err != nil || first.Code != http.StatusAccepted {
		t.Fatalf("after the flush, send with a key: %v %d %s", err, first.Code, first.Body)
	}
	replay, err := c.Send(t.Context(), (n-1)%n, conformance.Order(conformance.OpenID("flush-key", 0)), key)
	if err != nil || !replay.Replayed() || string(replay.Body) != string(first.Body) {
		t.Errorf("after the flush, the key's repeat: %v %d replayed=%v %s, want a replay of %s", err, replay.Code, replay.Replayed(), replay.Body, first.Body)
	}
	a, _ := first.Accepted()
	ids = append(ids, a.ID)
	if _, err := c.Await(t.Context(), ids, 30*time.Second, sent); err != nil {
		t.Fatal(err)
	}
	ledger := readLedger(t, env)
	once := checkExactlyOnce(t, ledger, ids)
	t.Logf("adversary store-flush [%s]: tried flushing Redis under load after %d messages acknowledged (%d in all, answers %v); saw /readyz 200 naming store_reset on %d/%d instances (after %v from the flush, polled in turn) and wxpush_store_resets_total up by %v; afterwards %d/%d new messages delivered exactly once, the idempotency key replayed, %d duplicates in the whole ledger",
		env.Backend(), len(before), len(acked), codes, warned, n, roundAll(alarmed), resets, once, len(ids), conformance.Duplicates(ledger))
}

// storeResets reads wxpush_store_resets_total from instance i's /metrics.
func storeResets(t *testing.T, c *conformance.Client, i int) float64 {
	t.Helper()
	r, err := c.Do(t.Context(), i, http.MethodGet, "/metrics", nil, nil)
	if err != nil || r.Code != http.StatusOK {
		t.Fatalf("instance %d /metrics: %v %d", i, err, r.Code)
	}
	for line := range strings.SplitSeq(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, "wxpush_store_resets_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("instance %d: %q: %v", i, line, err)
			}
			return f
		}
	}
	t.Fatalf("instance %d: /metrics has no wxpush_store_resets_total", i)
	return 0
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
