package conformance_test

import (
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/window"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// TestPacing: WeChat's frequency limits make messages wait, never fail.
// Timeline: for the first 1.5 s every send answers 45011 (per-minute limit),
// then the next 10 sends answer 45009 (daily quota); 40 messages are posted
// at once. Every one ends sent, none failed, and the waits spent no
// attempts beyond the budget.
func TestPacing(t *testing.T) {
	env := conformance.New(t, conformance.Options{MaxAttempts: 3})
	c := conformance.NewClient(env)
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, ErrCode: 45011, ForMS: 1500})
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, ErrCode: 45009, Times: 10})
	start := time.Now()
	var ids []string
	for n := range 40 {
		r, err := c.Send(t.Context(), n%env.Instances(), conformance.Order(conformance.OpenID("pacing", n)), "")
		if err != nil || r.Code != 202 {
			t.Fatalf("send: %v %d %s", err, r.Code, r.Body)
		}
		a, _ := r.Accepted()
		ids = append(ids, a.ID)
	}
	final, err := c.Await(t.Context(), ids, 60*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for id, m := range final {
		if m.Status == service.StatusFailed {
			failed++
			t.Errorf("message %s failed (%s, %+v): frequency limits must make it wait", id, m.Reason, m.LastError)
		}
	}
	st := stats(t, env)
	ledger := readLedger(t, env)
	once := checkExactlyOnce(t, ledger, ids)
	if st.ByErrcode["45011"] == 0 || st.ByErrcode["45009"] == 0 {
		t.Errorf("the limits did not bite: 45011 %d, 45009 %d", st.ByErrcode["45011"], st.ByErrcode["45009"])
	}
	t.Logf("pacing [%s]: 40 messages, 45011 answered %d, 45009 answered %d, %d failed, %d delivered exactly once, all sent in %s",
		env.Backend(), st.ByErrcode["45011"], st.ByErrcode["45009"], failed, once, time.Since(start).Round(time.Millisecond))

	t.Run("per-app-rate-limit", testRateLimit)
}

// testRateLimit: an app limited to R messages/s, sent for by two
// instances at once: WeChat never sees more than R per second from it
// (counted in 1-second windows over the mock's receipt times, with room
// for the limiter's burst of one and scheduling jitter), and every message
// is delivered exactly once without failing.
func testRateLimit(t *testing.T) {
	const rate, n = 20.0, 80
	env := conformance.New(t, conformance.Options{RateLimit: rate})
	c := conformance.NewClient(env)
	start := time.Now()
	var ids []string
	for i := range n {
		r, err := c.Send(t.Context(), i%env.Instances(), conformance.Order(conformance.OpenID("rate", i)), "")
		if err != nil || r.Code != 202 {
			t.Fatalf("send: %v %d %s", err, r.Code, r.Body)
		}
		a, _ := r.Accepted()
		ids = append(ids, a.ID)
	}
	final, err := c.Await(t.Context(), ids, 60*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range final {
		if m.Status == service.StatusFailed {
			t.Errorf("message %s failed (%s): a rate limit makes messages wait", id, m.Reason)
		}
	}
	once := checkExactlyOnce(t, readLedger(t, env), ids)
	var times []time.Time
	err = env.Mock().AllMessages(t.Context(), 0, func(e mockwx.LedgerEntry) error {
		if e.ErrCode == 0 && !e.Deduplicated {
			times = append(times, e.ReceivedAt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	worst := window.MaxIn(times, time.Second)
	limit := int(rate*1.25) + 1
	if worst > limit {
		t.Errorf("WeChat saw %d sends in one second from an app limited to %.0f/s (allowed up to %d)", worst, rate, limit)
	}
	span := times[len(times)-1].Sub(times[0]).Seconds()
	t.Logf("rate limit [%s]: %d messages over %d instances at R=%.0f/s: max %d in any 1 s window (allowed %d), achieved %.1f/s, %d delivered exactly once, in %s",
		env.Backend(), n, env.Instances(), rate, worst, limit, float64(len(times)-1)/span, once, time.Since(start).Round(time.Millisecond))
}
