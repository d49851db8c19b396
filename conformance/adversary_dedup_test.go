package conformance_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// TestAdversaryDedupWindow: WeChat drops a resend with the same
// client_msg_id only within its dedup window. The mock processes a send
// and loses the answer (connection reset after the work: the user has the
// message), then answers 45009 (daily quota, the app pauses) for longer
// than the window. A resend after the window would reach the user a
// second time, so the service must not make one: the ledger shows exactly
// one delivery and the message ends failed/unconfirmed, counted in
// wxpush_messages_failed_total{reason="unconfirmed"}.
func TestAdversaryDedupWindow(t *testing.T) {
	const window = 3 * time.Second // the mock's and the service's
	env := conformance.New(t, conformance.Options{DedupWindow: window})
	c := conformance.NewClient(env)
	user := conformance.OpenID("dedupwin", 1)
	// Added in this order, the reset answers the first send; the 45009
	// rule, shadowed until then, answers every later send for 10 s, more
	// than three windows.
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Match: mockwx.Match{ToUser: user}, Fault: mockwx.FaultReset, Times: 1})
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Match: mockwx.Match{ToUser: user}, ErrCode: 45009, ForMS: 10_000})

	r, err := c.Send(t.Context(), 0, conformance.Order(user), "")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	a, err := r.Accepted()
	if err != nil {
		t.Fatal(err)
	}
	final, err := c.Await(t.Context(), []string{a.ID}, 40*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := final[a.ID]
	ledger := readLedger(t, env)
	s := ledger[a.ID]
	if s == nil {
		t.Fatalf("the ledger has no send of %s", a.ID)
	}
	unconfirmed := failedTotal(t, env, c, service.ReasonUnconfirmed)
	t.Logf("adversary dedup-window: tried a lost answer then 45009 for 10 s against a %s dedup window, saw %d sends (%d delivered, %d deduplicated, errcodes %v), status %s/%s after %d attempts, failed_total{unconfirmed}=%d",
		window, s.Calls, s.Delivered, s.Deduplicated, s.ErrCodes, m.Status, m.Reason, m.Attempts, unconfirmed)

	if s.Delivered != 1 {
		t.Errorf("message %s reached the user %d times (want exactly once): ledger %+v", a.ID, s.Delivered, s)
	}
	if m.Status != service.StatusFailed || m.Reason != service.ReasonUnconfirmed {
		t.Errorf("message %s ended %s/%s, want failed/%s: WeChat may have delivered it and a resend after the window would deliver it again", a.ID, m.Status, m.Reason, service.ReasonUnconfirmed)
	}
	if unconfirmed != 1 {
		t.Errorf(`wxpush_messages_failed_total{reason="unconfirmed"} over the instances = %d, want 1`, unconfirmed)
	}
}

// failedTotal sums wxpush_messages_failed_total{reason=reason} over the
// instances' /metrics.
func failedTotal(t *testing.T, env conformance.Env, c *conformance.Client, reason string) int {
	t.Helper()
	total := 0
	for i := range env.Instances() {
		r, err := c.Do(t.Context(), i, http.MethodGet, "/metrics", nil, nil)
		if err != nil || r.Code != http.StatusOK {
			t.Fatalf("instance %d /metrics: %v (HTTP %d)", i, err, r.Code)
		}
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "wxpush_messages_failed_total{") || !strings.Contains(line, `reason="`+reason+`"`) {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("instance %d /metrics: %q: %v", i, line, err)
			}
			total += int(v)
		}
	}
	return total
}
