package httpapi

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/service"
)

// batchOf returns a batch body of the given items.
func batchOf(items ...string) string {
	return `{"messages":[` + strings.Join(items, ",") + `]}`
}

// repeat returns n copies of item.
func repeat(item string, n int) []string {
	items := make([]string, n)
	for i := range items {
		items[i] = item
	}
	return items
}

// withKey adds an idempotency_key to a message body.
func withKey(body, key string) string {
	return `{"idempotency_key":"` + key + `",` + body[1:]
}

func TestBatchMixed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// Earlier requests: one to replay, one to conflict with.
	for _, key := range []string{"k-replay", "k-conflict"} {
		if rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{service.HeaderIdempotencyKey: key}); rec.Code != http.StatusAccepted {
			t.Fatalf("setup %s: status %d (%s)", key, rec.Code, rec.Body)
		}
	}
	other := strings.Replace(validBody, "hello", "other", 1)

	rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(
		validBody,                          // 0: new
		withField("touser", `"a b"`),       // 1: invalid
		withKey(other, "k-conflict"),       // 2: conflict
		withKey(validBody, "k-replay"),     // 3: replay
		`{"touser":7}`,                     // 4: wrong type
		withKey(validBody, `bad\u0001key`), // 5: bad key
		withField("extra", "1"),            // 6: unknown field
		`{"app":"shop",`+validBody[1:],     // 7: new, other app
	), nil)
	if got, want := rec.Code, http.StatusMultiStatus; got != want {
		t.Fatalf("status %d, want %d (%s)", got, want, rec.Body)
	}
	var got service.BatchResponse
	decode(t, rec, &got)
	invalid := func(field string) *service.Error {
		return &service.Error{Code: service.CodeInvalidRequest, Field: field}
	}
	want := service.BatchResponse{
		Accepted: 3,
		Rejected: 5,
		Results: []service.BatchResult{
			{Index: 0, StatusCode: 202, ID: "msg-3", Status: service.StatusQueued},
			{Index: 1, StatusCode: 400, Error: invalid("messages[1].touser")},
			{Index: 2, StatusCode: 409, Error: &service.Error{Code: service.CodeIdempotencyConflict, Field: "messages[2].idempotency_key"}},
			{Index: 3, StatusCode: 202, ID: "msg-1", Status: service.StatusQueued, Replayed: true},
			{Index: 4, StatusCode: 400, Error: invalid("messages[4].touser")},
			{Index: 5, StatusCode: 400, Error: invalid("messages[5].idempotency_key")},
			{Index: 6, StatusCode: 400, Error: invalid("messages[6].extra")},
			{Index: 7, StatusCode: 202, ID: "msg-6", Status: service.StatusQueued},
		},
	}
	for i := range got.Results {
		if e := got.Results[i].Error; e != nil {
			if e.Message == "" {
				t.Errorf("result %d: error without a message", i)
			}
			e.Message = ""
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("batch response\n got %+v\nwant %+v", got, want)
	}

	// Setup made 2 calls; the batch one more, with only the valid items.
	if got, want := e.q.callCount(), 3; got != want {
		t.Fatalf("%d Enqueue calls, want %d", got, want)
	}
	var ids []string
	for _, m := range e.q.enqueued()[2:] {
		ids = append(ids, m.ID+"/"+m.App+"/"+m.IdempotencyKey)
		if !m.AcceptedAt.Equal(fixedNow()) || m.RequestHash != RequestHash(m.Request) {
			t.Errorf("enqueued %+v: wrong AcceptedAt or RequestHash", m)
		}
	}
	if want := []string{"msg-3/default/", "msg-4/default/k-conflict", "msg-5/default/k-replay", "msg-6/shop/"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("enqueued %q, want %q", ids, want)
	}
}

func TestBatchAllValid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(validBody, withKey(validBody, "k1")), nil)
	if got, want := rec.Code, http.StatusAccepted; got != want {
		t.Fatalf("status %d, want %d (%s)", got, want, rec.Body)
	}
	var got service.BatchResponse
	decode(t, rec, &got)
	want := service.BatchResponse{Accepted: 2, Results: []service.BatchResult{
		{Index: 0, StatusCode: 202, ID: "msg-1", Status: service.StatusQueued},
		{Index: 1, StatusCode: 202, ID: "msg-2", Status: service.StatusQueued},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("batch response %+v, want %+v", got, want)
	}
	if got := e.q.callCount(); got != 1 {
		t.Errorf("%d Enqueue calls, want 1", got)
	}
}

// TestBatchOnlyInvalid: a batch none of whose items is accepted is a 400
// API error that carries the per-item errors (207 is for a batch of which
// some succeeded), and stores nothing.
func TestBatchOnlyInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(`{}`, `null`, withField("touser", `"a\u0000b"`)), nil)
	if got, want := rec.Code, http.StatusBadRequest; got != want {
		t.Fatalf("status %d, want %d (%s)", got, want, rec.Body)
	}
	var got service.BatchResponse
	decode(t, rec, &got)
	if got.Error == nil || got.Error.Code != service.CodeInvalidRequest || got.Error.Field != "messages" {
		t.Errorf("error %+v, want invalid_request on field messages", got.Error)
	}
	if got.Accepted != 0 || got.Rejected != 3 || len(got.Results) != 3 {
		t.Fatalf("batch response %+v, want 3 rejected", got)
	}
	for i, r := range got.Results {
		if r.StatusCode != http.StatusBadRequest || r.Error == nil || !strings.HasPrefix(r.Error.Field, "messages[") {
			t.Errorf("result %d = %+v, want a 400 naming its item", i, r)
		}
	}
	if got := e.q.callCount(); got != 0 {
		t.Errorf("%d Enqueue calls, want none", got)
	}
}

// TestBatchOnlyConflicts: a batch whose every item reused an idempotency
// key with another request is a 409 with the per-item errors.
func TestBatchOnlyConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(withKey(validBody, "k1")), nil); rec.Code != http.StatusAccepted {
		t.Fatalf("first batch: status %d (%s)", rec.Code, rec.Body)
	}
	rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(withKey(withField("touser", `"other"`), "k1")), nil)
	if got, want := rec.Code, http.StatusConflict; got != want {
		t.Fatalf("status %d, want %d (%s)", got, want, rec.Body)
	}
	var got service.BatchResponse
	decode(t, rec, &got)
	if got.Error == nil || got.Error.Code != service.CodeIdempotencyConflict || got.Rejected != 1 || got.Results[0].StatusCode != http.StatusConflict {
		t.Errorf("batch response %+v (error %+v), want a 409 idempotency_conflict with the item's error", got, got.Error)
	}
}

func TestBatchRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   string
		field  string
	}{
		{name: "empty", body: `{"messages":[]}`, status: 400, code: service.CodeInvalidRequest, field: "messages"},
		{name: "missing", body: `{}`, status: 400, code: service.CodeInvalidRequest, field: "messages"},
		{name: "too many", body: batchOf(repeat(validBody, service.MaxBatch+1)...), status: 400, code: service.CodeInvalidRequest, field: "messages"},
		{name: "Idempotency-Key header", body: batchOf(validBody), hdr: map[string]string{service.HeaderIdempotencyKey: "k"}, status: 400, code: service.CodeInvalidRequest, field: service.HeaderIdempotencyKey},
		{name: "unknown top-level field", body: `{"messages":[` + validBody + `],"x":1}`, status: 400, code: service.CodeInvalidRequest, field: "x"},
		{name: "messages not an array", body: `{"messages":{}}`, status: 400, code: service.CodeInvalidRequest, field: "messages"},
		{name: "malformed", body: `{"messages":[`, status: 400, code: service.CodeInvalidRequest},
		{name: "trailing data", body: batchOf(validBody) + `[]`, status: 400, code: service.CodeInvalidRequest},
		{name: "too large", body: batchOf(withField("touser", `"`+strings.Repeat("a", MaxBatchBody)+`"`)), status: 413, code: service.CodePayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			rec := e.do(t, http.MethodPost, "/v1/messages/batch", tt.body, tt.hdr)
			if got := rec.Code; got != tt.status {
				t.Fatalf("status %d, want %d (%.300s)", got, tt.status, rec.Body)
			}
			if got := apiError(t, rec); got.Code != tt.code || got.Field != tt.field {
				t.Errorf("error %+v, want code %q on field %q", got, tt.code, tt.field)
			}
			if got := e.q.callCount(); got != 0 {
				t.Errorf("%d Enqueue calls, want none", got)
			}
		})
	}
	t.Run("1000 items", func(t *testing.T) {
		e := newEnv(t, nil)
		rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(repeat(validBody, service.MaxBatch)...), nil)
		if got := rec.Code; got != http.StatusAccepted {
			t.Fatalf("status %d, want 202 (%.300s)", got, rec.Body)
		}
		if got := len(e.q.enqueued()); got != service.MaxBatch {
			t.Errorf("%d messages enqueued, want %d", got, service.MaxBatch)
		}
	})
}

func TestBatchQueueDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.q.enqueueErr = errUnavailable()
	rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(validBody, withField("touser", `""`)), nil)
	if got, want := rec.Code, http.StatusServiceUnavailable; got != want {
		t.Fatalf("status %d, want %d (%s)", got, want, rec.Body)
	}
	if got := apiError(t, rec).Code; got != service.CodeUnavailable {
		t.Errorf("code %q, want %q", got, service.CodeUnavailable)
	}
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
}
