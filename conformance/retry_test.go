package conformance_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
)

// retryCase is one row of the matrix: a fault the mock answers one
// message's sends with, and what must become of the message.
type retryCase struct {
	name   string
	rule   mockwx.Rule // Match.ToUser is set per case
	class  string
	status service.Status // the final status
	reason string         // for failed
	calls  int            // template sends the ledger records for the message
	// attempts, when not zero, is the exact attempt count the status API reports.
	attempts int
}

// retryMatrix derives the cases from internal/wechat's errcode table, one
// per code and class, plus transport faults, latency and exhaustion.
func retryMatrix(maxAttempts int) []retryCase {
	var cases []retryCase
	codes := wechat.Codes()
	slices.Sort(codes)
	for _, code := range codes {
		if code == 0 {
			continue
		}
		class := wechat.ClassifyAPI(wechat.APITemplateSend, code)
		c := retryCase{name: fmt.Sprintf("errcode_%d", code), class: class.String(), rule: mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, ErrCode: code, Times: 1}}
		switch class {
		case wechat.ClassRetry:
			c.rule.Times = 2
			c.status, c.calls, c.attempts = service.StatusSent, 3, 3
		case wechat.ClassTokenInvalid, wechat.ClassPace, wechat.ClassQuota, wechat.ClassPermanentApp:
			// Refresh and resend at once, or wait (pace, quota, app) without
			// spending an attempt; then it goes through.
			c.status, c.calls = service.StatusSent, 2
		case wechat.ClassPermanentMessage:
			c.status, c.reason, c.calls, c.attempts = service.StatusFailed, service.ReasonPermanentErrcode, 1, 1
		default:
			continue
		}
		cases = append(cases, c)
	}
	// Transport faults: the mock processed the send, then the answer was
	// lost; the resends carry the same client_msg_id and are absorbed.
	for _, f := range []mockwx.FaultKind{mockwx.FaultReset, mockwx.FaultTimeout, mockwx.FaultMalformed, mockwx.FaultEmpty} {
		cases = append(cases, retryCase{name: "fault_" + string(f), class: "transport",
			rule:   mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Fault: f, Times: 2},
			status: service.StatusSent, calls: 3, attempts: 3})
	}
	// HTTP errors are answered before the send is processed (not in the ledger).
	for _, code := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable} {
		cases = append(cases, retryCase{name: fmt.Sprintf("http_%d", code), class: "transport",
			rule:   mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, HTTPStatus: code, Times: 2},
			status: service.StatusSent, calls: 1, attempts: 3})
	}
	ms := 300
	cases = append(cases,
		retryCase{name: "latency_300ms", class: "latency",
			rule:   mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Latency: &mockwx.Latency{FixedMS: &ms}},
			status: service.StatusSent, calls: 1, attempts: 1},
		retryCase{name: "exhausted_-1", class: "retry",
			rule:   mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, ErrCode: -1},
			status: service.StatusFailed, reason: service.ReasonAttemptsExhausted, calls: maxAttempts, attempts: maxAttempts},
	)
	return cases
}

// TestRetry sends one message per case of the matrix, all at once, and
// checks each message's end state, its attempts, and the ledger: how many
// sends it cost, that it reached the user at most once (exactly once when
// it ends sent), that permanent codes were never retried, and that every
// attempt carried the same client_msg_id (the message id).
func TestRetry(t *testing.T) {
	const maxAttempts = 5
	env := conformance.New(t, conformance.Options{MaxAttempts: maxAttempts})
	c := conformance.NewClient(env)
	cases := retryMatrix(maxAttempts)
	ids := make([]string, len(cases))
	users := make([]string, len(cases))
	for i := range cases {
		users[i] = conformance.OpenID("retry", i)
		cases[i].rule.Match.ToUser = users[i]
		conformance.AddFault(t, env.Mock(), cases[i].rule)
	}
	var wg sync.WaitGroup
	for i := range cases {
		wg.Go(func() {
			r, err := c.Send(t.Context(), i%env.Instances(), conformance.Order(users[i]), "")
			if err != nil {
				t.Errorf("%s: send: %v", cases[i].name, err)
				return
			}
			a, err := r.Accepted()
			if err != nil {
				t.Errorf("%s: %v", cases[i].name, err)
				return
			}
			ids[i] = a.ID
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	start := time.Now()
	final, err := c.Await(t.Context(), ids, 60*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	drained := time.Since(start)
	ledger := readLedger(t, env)
	byUser := map[string][]string{} // touser -> client_msg_ids of its sends
	if err := env.Mock().AllMessages(t.Context(), 0, func(e mockwx.LedgerEntry) error {
		byUser[e.ToUser] = append(byUser[e.ToUser], e.ClientMsgID)
		return nil
	}); err != nil {
		t.Fatalf("ledger: %v", err)
	}

	perClass := map[string]int{}
	var totalCalls, permanent, permanentOnce int
	for i, tc := range cases {
		perClass[tc.class]++
		t.Run(tc.name, func(t *testing.T) {
			m := final[ids[i]]
			s := ledger[ids[i]]
			if s == nil {
				s = &conformance.Sends{}
			}
			totalCalls += s.Calls
			if m.Status != tc.status || m.Reason != tc.reason {
				t.Errorf("status %q reason %q, want %q %q (last_error %+v)", m.Status, m.Reason, tc.status, tc.reason, m.LastError)
			}
			if tc.attempts != 0 && m.Attempts != tc.attempts {
				t.Errorf("attempts %d, want %d", m.Attempts, tc.attempts)
			}
			if s.Calls != tc.calls {
				t.Errorf("ledger: %d sends for the message, want %d (errcodes %v)", s.Calls, tc.calls, s.ErrCodes)
			}
			wantDelivered := 0
			if tc.status == service.StatusSent {
				wantDelivered = 1
			}
			if s.Delivered != wantDelivered {
				t.Errorf("ledger: delivered %d times, want %d", s.Delivered, wantDelivered)
			}
			if tc.reason == service.ReasonPermanentErrcode {
				permanent++
				if s.Calls == 1 {
					permanentOnce++
				}
			}
			for _, cm := range byUser[users[i]] {
				if cm != ids[i] {
					t.Errorf("a send carried client_msg_id %q, want the message id %q on every attempt", cm, ids[i])
					break
				}
			}
		})
	}
	var classes []string
	for k, v := range perClass {
		classes = append(classes, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(classes)
	t.Logf("retry [%s]: %d cases (%s), %d ledger sends, drained in %s; permanent codes sent once and never retried: %d of %d; client_msg_id constant across attempts: checked on every send",
		env.Backend(), len(cases), strings.Join(classes, ", "), totalCalls, drained.Round(time.Millisecond), permanentOnce, permanent)
}
