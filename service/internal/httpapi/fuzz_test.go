package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/service"
)

// FuzzSendRequest posts arbitrary bodies to POST /v1/messages with a
// healthy queue: the answer is never a 5xx, always JSON, a 202 only for a
// body that decodes and passes Validate (and then the queue received
// exactly that normalized request), and otherwise a 400 or 413 error.
// Seeds live in testdata/fuzz/FuzzSendRequest.
func FuzzSendRequest(f *testing.F) {
	e := newEnv(f, func(o *Options) { o.Logger = nil }) // discard: the log would grow for the whole run
	apps := []string{"default", "shop"}
	f.Fuzz(func(t *testing.T, body []byte) {
		e.q.reset()
		req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)

		if rec.Code >= 500 {
			t.Fatalf("body %q: status %d (%s)", body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("body %q: answer %q is not JSON", body, rec.Body)
		}
		after := e.q.enqueued()
		switch rec.Code {
		case http.StatusAccepted:
			var want service.SendRequest
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("body %q: 202 for a body that does not decode: %v", body, err)
			}
			if ve := Validate(&want, apps); ve != nil {
				t.Fatalf("body %q: 202 for a request Validate refuses: %+v", body, ve)
			}
			if len(after) != 1 {
				t.Fatalf("body %q: 202 with %d messages enqueued, want 1", body, len(after))
			}
			if got := after[0].Request; !reflect.DeepEqual(got, want) {
				t.Fatalf("body %q: enqueued %+v, want %+v", body, got, want)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var got service.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Error.Code == "" {
				t.Fatalf("body %q: status %d with body %q, want an API error", body, rec.Code, rec.Body)
			}
			if len(after) != 0 {
				t.Fatalf("body %q: status %d but %d messages enqueued", body, rec.Code, len(after))
			}
		default:
			t.Fatalf("body %q: status %d, want 202, 400 or 413", body, rec.Code)
		}
	})
}
