package worker

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// TestReviewReclaimLogCarriesTheRequestID: issue 15 asks for the
// accepting request's id on every log line about a message; the line that
// says a message was reclaimed from a stopped worker names only its id.
func TestReviewReclaimLogCarriesTheRequestID(t *testing.T) {
	r := redistest.New(t)
	q := store.New(r.Client, store.Options{Prefix: r.Prefix})
	ctx := t.Context()
	require.NoError(t, q.EnsureGroup(ctx))
	id := store.NewID(time.Now())
	_, err := q.Enqueue(ctx, []store.NewMessage{{
		ID: id, App: "default", AcceptedAt: time.Now(), RequestID: "req-review-reclaim",
		Request: service.SendRequest{App: "default", ToUser: "oUser-worker-000001", TemplateID: "tpl",
			Data: map[string]service.DataValue{"thing1": {Value: "v"}}},
	}})
	require.NoError(t, err)
	got, err := q.Read(ctx, "dead-worker", 1, time.Second) // a worker that took it and died
	require.NoError(t, err)
	require.Len(t, got, 1)
	if r.Mini != nil {
		r.Mini.SetTime(time.Now().Add(time.Minute))
	} else {
		time.Sleep(30 * time.Millisecond)
	}

	var logs syncBuffer
	w, err := New(q, fixedTokens{}, &scriptedSender{}, Options{Consumer: "test", Metrics: metrics.New(), Visibility: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	jobs := make(chan store.Entry, 10)
	w.reclaim(ctx, jobs)
	require.Len(t, jobs, 1, "the entry was reclaimed")
	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "reclaimed") {
			line = l
		}
	}
	require.NotEmpty(t, line, "a line says the message was reclaimed: %s", logs.String())
	assert.Contains(t, line, "id="+id)
	assert.Contains(t, line, "request_id=req-review-reclaim", "every log line about the message carries its request id")
}
