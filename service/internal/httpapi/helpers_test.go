package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
)

// testKey is the API key of the handlers under test.
const testKey = "sk-test-4f1d9c0e7a-very-secret"

// validBody is a minimal valid POST /v1/messages body.
const validBody = `{"touser":"oUser_01-x","template_id":"tmpl-1","data":{"thing1":{"value":"hello"}}}`

// fixedNow is the clock of the handlers under test.
func fixedNow() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }

// fakeQueue is an in-memory Queue with the store's idempotency semantics,
// plus knobs to fail.
type fakeQueue struct {
	mu         sync.Mutex
	keys       map[string]fakeKey // idempotency key -> first use
	messages   map[string]*service.Message
	calls      [][]store.NewMessage // every Enqueue call
	enqueueErr error
	getErr     error
	pingErr    error
	panicMsg   string // Enqueue panics with it when set
	hang       bool   // Enqueue waits for its context to end (a Redis that drops packets)
	results    func([]store.NewMessage) []store.EnqueueResult
}

type fakeKey struct{ hash, id string }

var _ Queue = (*fakeQueue)(nil)

func newFakeQueue() *fakeQueue {
	return &fakeQueue{keys: map[string]fakeKey{}, messages: map[string]*service.Message{}}
}

func (q *fakeQueue) Enqueue(ctx context.Context, msgs []store.NewMessage) ([]store.EnqueueResult, error) {
	if q.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.panicMsg != "" {
		panic(q.panicMsg)
	}
	if q.enqueueErr != nil {
		return nil, q.enqueueErr
	}
	q.calls = append(q.calls, append([]store.NewMessage(nil), msgs...))
	if q.results != nil {
		return q.results(msgs), nil
	}
	res := make([]store.EnqueueResult, len(msgs))
	for i, m := range msgs {
		if m.IdempotencyKey != "" {
			if k, ok := q.keys[m.IdempotencyKey]; ok {
				if k.hash == m.RequestHash {
					res[i] = store.EnqueueResult{Outcome: store.Replayed, ID: k.id}
				} else {
					res[i] = store.EnqueueResult{Outcome: store.Conflict}
				}
				continue
			}
			q.keys[m.IdempotencyKey] = fakeKey{hash: m.RequestHash, id: m.ID}
		}
		q.messages[m.ID] = &service.Message{
			ID: m.ID, App: m.App, ToUser: m.Request.ToUser, TemplateID: m.Request.TemplateID,
			Status: service.StatusQueued, CreatedAt: m.AcceptedAt, UpdatedAt: m.AcceptedAt,
		}
		res[i] = store.EnqueueResult{Outcome: store.Created, ID: m.ID}
	}
	return res, nil
}

func (q *fakeQueue) Get(_ context.Context, id string) (*service.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.getErr != nil {
		return nil, q.getErr
	}
	m, ok := q.messages[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return m, nil
}

func (q *fakeQueue) Ping(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pingErr
}

// reset forgets every message, key and call.
func (q *fakeQueue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.keys, q.messages, q.calls = map[string]fakeKey{}, map[string]*service.Message{}, nil
}

// enqueued returns every message given to Enqueue, in order.
func (q *fakeQueue) enqueued() []store.NewMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	var all []store.NewMessage
	for _, c := range q.calls {
		all = append(all, c...)
	}
	return all
}

// callCount returns how many times Enqueue stored something.
func (q *fakeQueue) callCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.calls)
}

// testEnv is one handler under test with its fakes.
type testEnv struct {
	h       http.Handler
	q       *fakeQueue
	logs    *syncbuf.Buffer
	metrics *metrics.Metrics
}

// newEnv builds a handler with apps "default" and "shop", the test key,
// a counter for ids and a fixed clock; edit adjusts the options.
func newEnv(t testing.TB, edit func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{q: newFakeQueue(), logs: &syncbuf.Buffer{}, metrics: metrics.New()}
	var n atomic.Int64
	opts := Options{
		Queue:   e.q,
		Apps:    []string{"default", "shop"},
		APIKeys: []wechat.Secret{testKey},
		NewID:   func() string { return "msg-" + strconv.FormatInt(n.Add(1), 10) },
		Now:     fixedNow,
		Logger:  slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: e.metrics,
	}
	if edit != nil {
		edit(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.h = h
	return e
}

// do serves one request; hdr adds headers, and the test key is sent unless
// hdr sets Authorization (to "" for none).
func (e *testEnv) do(t testing.TB, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	for k, v := range hdr {
		if k == "Authorization" && v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// apiError decodes an error body, failing the test when it is not one.
func apiError(t testing.TB, rec *httptest.ResponseRecorder) service.Error {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body service.ErrorResponse
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	if body.Error.Code == "" || body.Error.Message == "" {
		t.Errorf("error body %q lacks a code or message", rec.Body.String())
	}
	return body.Error
}

// decode decodes a JSON body into v.
func decode(t testing.TB, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
}

// errUnavailable returns a store failure as the store reports it.
func errUnavailable() error {
	return fmt.Errorf("enqueue: dial tcp 10.0.0.1:6379: connection refused: %w", store.ErrUnavailable)
}
