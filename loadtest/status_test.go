package loadtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wxpush/wxpush/service"
)

// urlStack is a Stack that only knows its instances' URLs and API key
// (the rest is never called by checkStatuses).
type urlStack struct {
	Stack
	urls []string
	key  string
}

func (s urlStack) ServiceURLs() []string { return s.urls }
func (s urlStack) APIKey() string        { return s.key }

// TestCheckStatuses checks that the status reads go to every instance
// with the API key, update the tracked messages they find, and leave the
// others (unknown, or an instance that fails) as they were.
func TestCheckStatuses(t *testing.T) {
	updated := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	var hits [2]atomic.Int64
	instance := func(n int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[n].Add(1)
			id, ok := strings.CutPrefix(r.URL.Path, "/v1/messages/")
			switch {
			case r.Header.Get("Authorization") != "Bearer lt-key":
				w.WriteHeader(http.StatusUnauthorized)
			case !ok || id == "gone":
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no message with that id"}}`)
			default:
				_ = json.NewEncoder(w).Encode(service.Message{ID: id, Status: service.StatusFailed, Reason: "user_block", UpdatedAt: updated})
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := instance(0), instance(1)
	r := &runner{out: io.Discard, stack: urlStack{urls: []string{a.URL, b.URL}, key: "lt-key"}}
	ts := []*tracked{{id: "m1", status: service.StatusSent}, {id: "gone", status: service.StatusSent}, {id: "m3"}, {id: "m4"}}
	got := r.checkStatuses(t.Context(), ts)
	assert.Equal(t, 3, got, "three of four messages were read")
	for _, tr := range []*tracked{ts[0], ts[2], ts[3]} {
		assert.Equal(t, service.StatusFailed, tr.status, tr.id)
		assert.Equal(t, "user_block", tr.reason, tr.id)
		assert.Equal(t, updated, tr.updatedAt, tr.id)
	}
	assert.Equal(t, service.StatusSent, ts[1].status, "an unknown message keeps its status")
	assert.Equal(t, int64(2), hits[0].Load(), "reads alternate over the instances")
	assert.Equal(t, int64(2), hits[1].Load(), "reads alternate over the instances")
	assert.Zero(t, r.checkStatuses(t.Context(), nil))
}
