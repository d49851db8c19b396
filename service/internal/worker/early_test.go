package worker

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// fixedTokens hands out one token and never invalidates.
type fixedTokens struct{}

func (fixedTokens) Token(context.Context, string) (wechat.Secret, error) { return "tok", nil }
func (fixedTokens) Invalidate(context.Context, string, wechat.Secret) (bool, error) {
	return false, nil
}

// msgidSender accepts every message with one msgid.
type msgidSender int64

func (s msgidSender) SendTemplate(context.Context, wechat.Secret, *wechat.TemplateMessage) (int64, error) {
	return int64(s), nil
}

func counterValue(t *testing.T, m *metrics.Metrics, app, reason string) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.Failed.WithLabelValues(app, reason).Write(&d))
	return d.GetCounter().GetValue()
}

// TestEarlyFailureIsCounted: a delivery report that overtakes the send's
// own write is parked and applied by Settle; the message ends failed there,
// and wxpush_messages_failed_total counts it with the report's reason, as
// it counts a report applied after the send.
func TestEarlyFailureIsCounted(t *testing.T) {
	r := redistest.New(t)
	q := store.New(r.Client, store.Options{Prefix: r.Prefix})
	ctx := t.Context()
	require.NoError(t, q.EnsureGroup(ctx))
	now := time.Now()
	res, err := q.Enqueue(ctx, []store.NewMessage{{
		ID: "early-1", App: "default", AcceptedAt: now,
		Request: service.SendRequest{App: "default", ToUser: "oUser-worker-000001", TemplateID: "tpl",
			Data: map[string]service.DataValue{"thing1": {Value: "v"}}},
	}})
	require.NoError(t, err)
	require.Equal(t, store.Created, res[0].Outcome)

	const msgid = 4242
	parked, err := q.ApplyDelivery(ctx, store.DeliveryReport{App: "default", MsgID: msgid, Status: wechat.StatusUserBlock,
		Reason: service.ReasonUserBlock, OpenID: "oUser-worker-000001", ReceivedAt: now}, time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryParked, parked.Outcome)

	m := metrics.New()
	w, err := New(q, fixedTokens{}, msgidSender(msgid), Options{Consumer: "test", Metrics: m})
	require.NoError(t, err)
	entries, err := q.Read(ctx, "test", 10, time.Second)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	w.process(ctx, entries[0])

	rec, err := q.Get(ctx, "early-1")
	require.NoError(t, err)
	assert.Equal(t, service.StatusFailed, rec.Status)
	assert.Equal(t, service.ReasonUserBlock, rec.Reason)
	assert.Equal(t, 1.0, counterValue(t, m, "default", service.ReasonUserBlock), "the early failure is counted")
}
