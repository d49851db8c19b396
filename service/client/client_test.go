package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// seen is one request the fake server got.
type seen struct {
	method, path, rawQuery string
	header                 http.Header
	body                   string
}

// fake is an httptest server that records requests and answers with
// reply.
type fake struct {
	mu    sync.Mutex
	reqs  []seen
	reply func(w http.ResponseWriter, r *http.Request)
	srv   *httptest.Server
}

func newFake(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) (*fake, *client.Client) {
	t.Helper()
	f := &fake{reply: reply}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), string(b)})
		f.mu.Unlock()
		f.reply(w, r)
	}))
	t.Cleanup(f.srv.Close)
	c, err := client.New(f.srv.URL+"/", client.WithAPIKey("k-123"), client.WithHTTPClient(f.srv.Client()), client.WithUserAgent("test-agent/2"))
	require.NoError(t, err)
	return f, c
}

func (f *fake) last(t *testing.T) seen {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.reqs, "no request reached the server")
	return f.reqs[len(f.reqs)-1]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestNewRefusesBadBaseURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://", "::"} {
		_, err := client.New(u)
		assert.Error(t, err, u)
	}
}

// TestRequests checks that each method makes the request the API
// documents (method, path, query, headers, body) and decodes its answer.
func TestRequests(t *testing.T) {
	msg := service.Message{ID: "m/1", App: "shop", Status: service.StatusFailed, Reason: service.ReasonUnconfirmed}
	app := service.AppStatus{App: "shop", State: service.AppActive}
	answers := map[string]any{
		"POST /v1/messages":                  service.Accepted{ID: "m1", Status: service.StatusQueued},
		"POST /v1/messages/batch":            service.BatchResponse{Accepted: 1, Results: []service.BatchResult{{StatusCode: 202, ID: "m2"}}},
		"GET /v1/messages/m%2F1":             msg,
		"GET /v1/messages":                   service.MessagePage{Messages: []service.Message{msg}, NextCursor: "c2"},
		"GET /v1/deadletters":                service.MessagePage{Messages: []service.Message{msg}},
		"POST /v1/messages/m%2F1/redrive":    msg,
		"POST /v1/deadletters/redrive":       service.BulkRedriveResult{Matched: 2, Redriven: 1, Skipped: map[string]int{"force_required": 1}, IDs: []string{"m1"}},
		"GET /v1/overview":                   service.Overview{Queue: service.QueueState{Backlog: 7}},
		"GET /v1/apps":                       service.AppList{Apps: []service.AppStatus{app}},
		"GET /v1/apps/shop":                  app,
		"POST /v1/apps/shop/resume":          app,
		"GET /v1/apps/shop/users/oUser_01-x": service.UserState{App: "shop", OpenID: "oUser_01-x"},
	}
	f, c := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		v, ok := answers[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			writeJSON(w, 404, service.ErrorResponse{Error: service.Error{Code: "not_found", Message: "no such route"}})
			return
		}
		if r.URL.Path == "/v1/messages" && r.Method == http.MethodPost {
			w.Header().Set(service.HeaderReplayed, "true")
		}
		writeJSON(w, 200, v)
	})
	ctx := client.WithRequestID(t.Context(), "ticket-1")
	req := service.SendRequest{ToUser: "oUser_01-x", TemplateID: "t1", Data: map[string]service.DataValue{"k": {Value: "v"}}}

	acc, replayed, err := c.Send(ctx, req, "key-1")
	require.NoError(t, err)
	assert.Equal(t, "m1", acc.ID)
	assert.True(t, replayed)
	s := f.last(t)
	assert.Equal(t, "POST", s.method)
	assert.Equal(t, "key-1", s.header.Get(service.HeaderIdempotencyKey))
	assert.Equal(t, "Bearer k-123", s.header.Get("Authorization"))
	assert.Equal(t, "test-agent/2", s.header.Get("User-Agent"))
	assert.Equal(t, "application/json", s.header.Get("Content-Type"))
	assert.Equal(t, "ticket-1", s.header.Get(service.HeaderRequestID))
	assert.JSONEq(t, `{"touser":"oUser_01-x","template_id":"t1","data":{"k":{"value":"v"}}}`, s.body)

	_, _, err = c.Send(t.Context(), req, "")
	require.NoError(t, err)
	_, has := f.last(t).header[service.HeaderIdempotencyKey]
	assert.False(t, has, "no key: no Idempotency-Key header")
	assert.Empty(t, f.last(t).header.Get(service.HeaderRequestID), "no request id in the context: none sent")

	br, err := c.SendBatch(t.Context(), []service.BatchItem{{SendRequest: req, IdempotencyKey: "b1"}})
	require.NoError(t, err)
	assert.Equal(t, 1, br.Accepted)
	assert.JSONEq(t, `{"messages":[{"touser":"oUser_01-x","template_id":"t1","data":{"k":{"value":"v"}},"idempotency_key":"b1"}]}`, f.last(t).body)

	m, err := c.Get(t.Context(), "m/1")
	require.NoError(t, err)
	assert.Equal(t, msg, *m)
	assert.Empty(t, f.last(t).body)

	since := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	page, err := c.Search(t.Context(), service.MessageQuery{App: "shop", ToUser: "oUser_01-x", Status: service.StatusFailed, Reason: "unconfirmed",
		TemplateID: "t1", RequestID: "r1", Since: since, Until: since.Add(time.Hour), Limit: 20, Cursor: "c1"})
	require.NoError(t, err)
	assert.Equal(t, "c2", page.NextCursor)
	q, err := url.ParseQuery(f.last(t).rawQuery)
	require.NoError(t, err)
	assert.Equal(t, url.Values{"app": {"shop"}, "touser": {"oUser_01-x"}, "status": {"failed"}, "reason": {"unconfirmed"}, "template_id": {"t1"},
		"request_id": {"r1"}, "since": {"2026-12-01T08:00:00Z"}, "until": {"2026-12-01T09:00:00Z"}, "limit": {"20"}, "cursor": {"c1"}}, q)
	_, err = c.Search(t.Context(), service.MessageQuery{})
	require.NoError(t, err)
	assert.Empty(t, f.last(t).rawQuery, "an empty query sends no parameter")

	_, err = c.DeadLetters(t.Context(), "shop", "unconfirmed", "", 5)
	require.NoError(t, err)
	assert.Equal(t, "app=shop&limit=5&reason=unconfirmed", f.last(t).rawQuery)

	_, err = c.Redrive(t.Context(), "m/1", true)
	require.NoError(t, err)
	assert.JSONEq(t, `{"force":true}`, f.last(t).body)

	bulk, err := c.RedriveBulk(t.Context(), service.BulkRedriveRequest{App: "shop", Reason: "unconfirmed", Force: true, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, 1, bulk.Skipped["force_required"])
	assert.JSONEq(t, `{"app":"shop","reason":"unconfirmed","force":true,"limit":10}`, f.last(t).body)

	o, err := c.Overview(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(7), o.Queue.Backlog)
	apps, err := c.Apps(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []service.AppStatus{app}, apps)
	a, err := c.App(t.Context(), "shop")
	require.NoError(t, err)
	assert.Equal(t, "shop", a.App)
	_, err = c.ResumeApp(t.Context(), "shop")
	require.NoError(t, err)
	assert.Equal(t, "POST /v1/apps/shop/resume", f.last(t).method+" "+f.last(t).path)
	u, err := c.UserState(t.Context(), "shop", "oUser_01-x")
	require.NoError(t, err)
	assert.Equal(t, "oUser_01-x", u.OpenID)
}

// TestErrors checks that a non-2xx answer is an *Error with the status,
// the API error, the request id and Retry-After, for errors.As.
func TestErrors(t *testing.T) {
	for _, tt := range []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		want       service.Error
		retryAfter time.Duration
	}{
		{"rate limited", 429, map[string]string{"Retry-After": "3", "X-Request-Id": "rq-1"},
			`{"error":{"code":"rate_limited","message":"too many requests"}}`, service.Error{Code: "rate_limited", Message: "too many requests"}, 3 * time.Second},
		{"invalid", 400, map[string]string{"X-Request-Id": "rq-1"},
			`{"error":{"code":"invalid_request","message":"touser is required","field":"touser"}}`, service.Error{Code: "invalid_request", Message: "touser is required", Field: "touser"}, 0},
		{"not json", 502, map[string]string{"X-Request-Id": "rq-1"}, "<html>bad gateway</html>", service.Error{Message: "<html>bad gateway</html>"}, 0},
		{"empty", 503, map[string]string{"X-Request-Id": "rq-1", "Retry-After": "soon"}, "", service.Error{Message: "Service Unavailable"}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newFake(t, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			_, err := c.Get(t.Context(), "m1")
			var e *client.Error
			require.True(t, errors.As(err, &e), "%v is not an *Error", err)
			assert.Equal(t, tt.status, e.StatusCode)
			assert.Equal(t, tt.want, e.API)
			assert.Equal(t, "rq-1", e.RequestID)
			assert.Equal(t, tt.retryAfter, e.RetryAfter)
			assert.Contains(t, e.Error(), strconv.Itoa(tt.status))
			assert.Equal(t, tt.want.Code != "", client.IsCode(err, tt.want.Code))
		})
	}
}

// TestBatchRejectedKeepsResults checks that a batch none of whose items
// was accepted returns its per-item results with the error.
func TestBatchRejectedKeepsResults(t *testing.T) {
	_, c := newFake(t, func(w http.ResponseWriter, _ *http.Request) {
		e := &service.Error{Code: "invalid_request", Message: "every message of the batch was rejected; see results", Field: "messages"}
		writeJSON(w, 400, service.BatchResponse{Error: e, Rejected: 1, Results: []service.BatchResult{{StatusCode: 400, Error: &service.Error{Code: "invalid_request", Message: "x", Field: "messages[0].touser"}}}})
	})
	br, err := c.SendBatch(t.Context(), []service.BatchItem{{}})
	require.True(t, client.IsCode(err, service.CodeInvalidRequest), "%v", err)
	require.NotNil(t, br)
	require.Len(t, br.Results, 1)
	assert.Equal(t, "messages[0].touser", br.Results[0].Error.Field)

	_, c = newFake(t, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 401, service.ErrorResponse{Error: service.Error{Code: "unauthorized", Message: "missing or invalid API key"}})
	})
	br, err = c.SendBatch(t.Context(), []service.BatchItem{{}})
	assert.True(t, client.IsCode(err, service.CodeUnauthorized), "%v", err)
	assert.Nil(t, br, "a 401 has no results")
}

// TestMessagesIteratesOverPages checks that Messages follows next_cursor
// to the last page, stops reading when the caller stops, and yields an
// error once.
func TestMessagesIteratesOverPages(t *testing.T) {
	pages := map[string]service.MessagePage{
		"":   {Messages: []service.Message{{ID: "5"}, {ID: "4"}}, NextCursor: "c1"},
		"c1": {Messages: []service.Message{}, NextCursor: "c2"}, // a selective filter can give an empty page
		"c2": {Messages: []service.Message{{ID: "3"}, {ID: "2"}}, NextCursor: "c3"},
		"c3": {Messages: []service.Message{{ID: "1"}}},
	}
	f, c := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("touser") != "oUser_01-x" {
			writeJSON(w, 400, service.ErrorResponse{Error: service.Error{Code: "invalid_request", Message: "filter lost", Field: "touser"}})
			return
		}
		p, ok := pages[r.URL.Query().Get("cursor")]
		if !ok {
			writeJSON(w, 503, service.ErrorResponse{Error: service.Error{Code: "unavailable", Message: "down"}})
			return
		}
		writeJSON(w, 200, p)
	})
	var ids []string
	for m, err := range c.Messages(t.Context(), service.MessageQuery{ToUser: "oUser_01-x"}) {
		require.NoError(t, err)
		ids = append(ids, m.ID)
	}
	assert.Equal(t, []string{"5", "4", "3", "2", "1"}, ids)
	assert.Len(t, f.reqs, 4)

	n := len(f.reqs)
	for m := range c.Messages(t.Context(), service.MessageQuery{ToUser: "oUser_01-x"}) {
		if m.ID == "4" {
			break
		}
	}
	assert.Equal(t, n+1, len(f.reqs), "stopping on the first page reads no other")

	var errs int
	for _, err := range c.Messages(t.Context(), service.MessageQuery{ToUser: "oUser_01-x", Cursor: "gone"}) {
		require.Error(t, err)
		errs++
	}
	assert.Equal(t, 1, errs)
}
