package conformance_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// TestOperator proves the operator's side against a deployment, across its
// instances (one accepts, another answers the operator): a message that
// failed is found by its user and among the dead letters, with the request
// id that created it and its timeline; a redrive sends it once; a message
// that has not failed, or whose failure needs force, is refused and left
// as it was; a bad filter is a 400 naming it.
func TestOperator(t *testing.T) {
	const maxAttempts = 3
	env := conformance.New(t, conformance.Options{MaxAttempts: maxAttempts})
	c := conformance.NewClient(env)
	ctx := t.Context()
	other := (env.Instances() - 1) % env.Instances() // the operator's instance
	ops := c.API(other)

	busy, gone := conformance.OpenID("operator", 1), conformance.OpenID("operator", 2)
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Match: mockwx.Match{ToUser: busy}, ErrCode: -1, Times: maxAttempts})
	conformance.AddFault(t, env.Mock(), mockwx.Rule{Endpoint: mockwx.EndpointTemplateSend, Match: mockwx.Match{ToUser: gone}, ErrCode: 40003})
	requestID := "conformance-operator-" + time.Now().UTC().Format("150405.000")
	send := func(to, rid string) string {
		t.Helper()
		acc, _, err := c.API(0).Send(client.WithRequestID(ctx, rid), conformance.Order(to), "")
		if err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		return acc.ID
	}
	b := send(busy, requestID)
	g := send(gone, requestID+"-2")
	final, err := c.Await(ctx, []string{b, g}, 60*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := final[b]; m.Status != service.StatusFailed || m.Reason != service.ReasonAttemptsExhausted {
		t.Fatalf("message %s: %s/%s, want failed/attempts_exhausted", b, m.Status, m.Reason)
	}
	if m := final[g]; m.Status != service.StatusFailed || m.Reason != service.ReasonPermanentErrcode {
		t.Fatalf("message %s: %s/%s, want failed/permanent_errcode", g, m.Status, m.Reason)
	}

	// Find it: by user, by request id, among the dead letters.
	for name, q := range map[string]service.MessageQuery{
		"touser":       {ToUser: busy},
		"request_id":   {RequestID: requestID},
		"failed+since": {Status: service.StatusFailed, Reason: service.ReasonAttemptsExhausted, ToUser: busy, Since: time.Now().Add(-10 * time.Minute)},
	} {
		page, err := ops.Search(ctx, q)
		if err != nil {
			t.Fatalf("search by %s: %v", name, err)
		}
		if len(page.Messages) != 1 || page.Messages[0].ID != b || page.Messages[0].RequestID != requestID {
			t.Errorf("search by %s: %+v, want exactly %s with request id %s", name, page.Messages, b, requestID)
		}
	}
	dead, err := ops.DeadLetters(ctx, "default", service.ReasonAttemptsExhausted, "", 500)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range dead.Messages {
		found = found || m.ID == b
	}
	if !found {
		t.Errorf("dead letters of default/attempts_exhausted lack %s", b)
	}

	// Its timeline: accepted with the request id, then every attempt.
	m, err := ops.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	attempts := 0
	for _, h := range m.History {
		if h.Type == service.HistoryAttempt {
			attempts++
		}
	}
	if len(m.History) == 0 || m.History[0].Type != service.HistoryAccepted || m.History[0].RequestID != requestID || attempts != maxAttempts {
		t.Errorf("history %+v: want accepted (request id %s) then %d attempts", m.History, requestID, maxAttempts)
	}

	// Refusals change nothing.
	if _, err := ops.Redrive(ctx, g, false); !client.IsCode(err, service.CodeForceRequired) {
		t.Errorf("redrive of a permanent failure without force: %v, want %s", err, service.CodeForceRequired)
	}
	if m, err := ops.Get(ctx, g); err != nil || m.Status != service.StatusFailed || m.Redrives != 0 {
		t.Errorf("after a refused redrive: %+v %v, want it failed as it was", m, err)
	}
	r, err := c.Do(ctx, other, http.MethodGet, "/v1/messages?statuss=failed", nil, nil)
	if err != nil || r.Code != http.StatusBadRequest || r.ErrorCode() != service.CodeInvalidRequest {
		t.Errorf("a misspelt filter: %d %s %v, want 400 invalid_request", r.Code, r.Body, err)
	}

	// Fix it: the redrive sends it once.
	if _, err := ops.Redrive(ctx, b, false); err != nil {
		t.Fatalf("redrive: %v", err)
	}
	if _, err := ops.Redrive(ctx, b, false); !client.IsCode(err, service.CodeNotFailed) && err != nil {
		t.Errorf("a second redrive: %v, want none or %s", err, service.CodeNotFailed)
	}
	final, err = c.Await(ctx, []string{b}, 60*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := final[b]; !m.Status.Terminal() || m.Status == service.StatusFailed || m.Redrives != 1 || m.Attempts != 1 {
		t.Errorf("after the redrive: %s, %d redrives, %d attempts; want sent or delivered, 1, 1", m.Status, m.Redrives, m.Attempts)
	}
	ledger := readLedger(t, env)
	if s := ledger[b]; s == nil || s.Delivered != 1 || s.Calls != maxAttempts+1 {
		t.Errorf("ledger of %s: %+v, want %d failing sends then 1 delivery", b, s, maxAttempts)
	}
}
