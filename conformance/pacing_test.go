package conformance_test

import (
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
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

	t.Run("per-app-rate-limit", func(t *testing.T) {
		t.Skip("per-app rate limits across instances are not in wxpushd yet (they land with the pacing work); this part asserts them once the setting exists")
	})
}
