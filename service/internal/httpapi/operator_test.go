package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// storeOperator is a real store with an overview of its counters only.
type storeOperator struct{ *store.Store }

func (o storeOperator) Overview(ctx context.Context) (*service.Overview, error) {
	m, err := o.Counts(ctx, time.Now().Add(-time.Minute), time.Now())
	return &service.Overview{Minutes: m, Apps: []service.AppStatus{}}, err
}

// newOperatorEnv is a handler on a real store (miniredis, or REDIS_URL).
func newOperatorEnv(t *testing.T) (*testEnv, *store.Store) {
	r := redistest.New(t)
	st := store.New(r.Client, store.Options{Prefix: r.Prefix})
	e := newEnv(t, func(o *Options) {
		o.Queue, o.Operator = st, storeOperator{st}
		o.NewID = func() string { return store.NewID(time.Now()) }
		o.Now = time.Now
	})
	return e, st
}

func TestSearchRefusesBadFiltersNamingThem(t *testing.T) {
	e, _ := newOperatorEnv(t)
	for _, tt := range []struct{ query, field string }{
		{"statuss=failed", "statuss"},
		{"status=lost", "status"},
		{"status=failed&status=sent", "status"},
		{"app=", "app"},
		{"app=a%20b", "app"},
		{"touser=" + url.QueryEscape("<script>"), "touser"},
		{"reason=" + url.QueryEscape("a b"), "reason"},
		{"reason=user_block&status=sent", "reason"},
		{"template_id=" + url.QueryEscape("t 1"), "template_id"},
		{"request_id=" + url.QueryEscape("r/1"), "request_id"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z", "until"},
		{"limit=0", "limit"},
		{"limit=501", "limit"},
		{"limit=ten", "limit"},
		{"cursor=" + url.QueryEscape("x'y"), "cursor"},
		{"cursor=abc", "cursor"},
	} {
		rec := e.do(t, http.MethodGet, "/v1/messages?"+tt.query, "", nil)
		require.Equal(t, http.StatusBadRequest, rec.Code, "%s: %s", tt.query, rec.Body)
		got := apiError(t, rec)
		assert.Equal(t, service.CodeInvalidRequest, got.Code, tt.query)
		assert.Equal(t, tt.field, got.Field, "%s: %s", tt.query, got.Message)
	}
	rec := e.do(t, http.MethodGet, "/v1/deadletters?status=sent", "", nil)
	require.Equal(t, http.StatusBadRequest, rec.Code, "dead letters take no status filter")
	assert.Equal(t, "status", apiError(t, rec).Field)
	rec = e.do(t, http.MethodGet, "/v1/messages", "", map[string]string{"Authorization": ""})
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "search needs the API key")
}

func TestRequestIDAndTraceParentAreKept(t *testing.T) {
	e, _ := newOperatorEnv(t)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{service.HeaderRequestID: "ticket-4711", service.HeaderTraceParent: tp})
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	var acc service.Accepted
	decode(t, rec, &acc)
	rec = e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{service.HeaderTraceParent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"})
	require.Equal(t, http.StatusAccepted, rec.Code)
	generated := rec.Header().Get(service.HeaderRequestID)
	require.NotEmpty(t, generated)

	rec = e.do(t, http.MethodGet, "/v1/messages/"+acc.ID, "", nil)
	var m service.Message
	decode(t, rec, &m)
	assert.Equal(t, "ticket-4711", m.RequestID)
	assert.Equal(t, tp, m.TraceParent)
	require.NotEmpty(t, m.History)
	assert.Equal(t, service.HistoryAccepted, m.History[0].Type)

	rec = e.do(t, http.MethodGet, "/v1/messages?request_id="+generated, "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var page service.MessagePage
	decode(t, rec, &page)
	require.Len(t, page.Messages, 1)
	assert.Equal(t, generated, page.Messages[0].RequestID, "a generated request id is stored as well")
	assert.Empty(t, page.Messages[0].TraceParent, "an invalid traceparent (all-zero trace id) is not kept")

	// The acceptance is logged at INFO with the request id.
	logs := e.logs.String()
	var accepted string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"message accepted"`) && strings.Contains(l, acc.ID) {
			accepted = l
		}
	}
	require.NotEmpty(t, accepted, logs)
	assert.Contains(t, accepted, `"level":"INFO"`)
	assert.Contains(t, accepted, `"request_id":"ticket-4711"`)
}

func TestValidTraceParent(t *testing.T) {
	for v, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":     true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":     true,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":     false, // version ff is invalid
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":     false, // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":     false, // zero parent id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7":        false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz": false,
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":     false,
		"": false,
	} {
		assert.Equal(t, want, validTraceParent(v), v)
	}
}

func TestRedriveAnswers(t *testing.T) {
	e, st := newOperatorEnv(t)
	ctx := t.Context()
	rec := e.do(t, http.MethodPost, "/v1/messages", validBody, nil)
	var acc service.Accepted
	decode(t, rec, &acc)

	rec = e.do(t, http.MethodPost, "/v1/messages/"+acc.ID+"/redrive", "", nil)
	require.Equal(t, http.StatusConflict, rec.Code)
	assert.Equal(t, service.CodeNotFailed, apiError(t, rec).Code)
	rec = e.do(t, http.MethodPost, "/v1/messages/"+store.NewID(time.Now())+"/redrive", "", nil)
	assert.Equal(t, http.StatusNotFound, rec.Code)
	rec = e.do(t, http.MethodPost, "/v1/messages/"+acc.ID+"/redrive", `{"forse":true}`, nil)
	require.Equal(t, http.StatusBadRequest, rec.Code, "an unknown field is refused, not read as no force")

	// Fail it as unconfirmed.
	entries, err := st.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err)
	_, n, err := st.Begin(ctx, acc.ID, time.Now(), store.Guard{})
	require.NoError(t, err)
	_, err = st.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleFail, App: "default", Reason: service.ReasonUnconfirmed, Attempt: n}, time.Now())
	require.NoError(t, err)

	rec = e.do(t, http.MethodPost, "/v1/messages/"+acc.ID+"/redrive", "", nil)
	require.Equal(t, http.StatusConflict, rec.Code)
	got := apiError(t, rec)
	assert.Equal(t, service.CodeForceRequired, got.Code)
	assert.Equal(t, "force", got.Field)

	rec = e.do(t, http.MethodGet, "/v1/deadletters?reason=unconfirmed", "", nil)
	var page service.MessagePage
	decode(t, rec, &page)
	require.Len(t, page.Messages, 1)
	assert.Equal(t, acc.ID, page.Messages[0].ID)

	rec = e.do(t, http.MethodPost, "/v1/messages/"+acc.ID+"/redrive", `{"force":true}`, map[string]string{service.HeaderRequestID: "op-redrive-1"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var m service.Message
	decode(t, rec, &m)
	assert.Equal(t, service.StatusQueued, m.Status)
	last := m.History[len(m.History)-1]
	assert.Equal(t, service.HistoryRedrive, last.Type)
	assert.Equal(t, "op-redrive-1", last.RequestID)
	assert.True(t, last.Forced)
	assert.Contains(t, e.logs.String(), `"msg":"message redriven by an operator"`)

	rec = e.do(t, http.MethodPost, "/v1/deadletters/redrive", `{"limit":1001}`, nil)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Equal(t, "limit", apiError(t, rec).Field)
	rec = e.do(t, http.MethodPost, "/v1/deadletters/redrive", `{"app":"a b"}`, nil)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Equal(t, "app", apiError(t, rec).Field)
	rec = e.do(t, http.MethodPost, "/v1/deadletters/redrive", `{}`, nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var bulk service.BulkRedriveResult
	decode(t, rec, &bulk)
	assert.Equal(t, 0, bulk.Matched, "nothing failed is left")

	rec = e.do(t, http.MethodGet, "/v1/overview", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	var o service.Overview
	decode(t, rec, &o)
	var accepted, redriven int64
	for _, m := range o.Minutes {
		accepted += m.Accepted
		redriven += m.Redriven
	}
	assert.Equal(t, int64(1), accepted)
	assert.Equal(t, int64(1), redriven)
}
