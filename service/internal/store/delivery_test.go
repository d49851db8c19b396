package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// sendingMessage enqueues a message and takes it to "sending"; it returns
// its queue entry, to settle.
func sendingMessage(t *testing.T, s *store.Store, id string) store.Entry {
	t.Helper()
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg(id, "", "h")})
	require.NoError(t, err)
	entries, err := s.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	n, _, err := s.MarkSending(ctx, id, now, store.Guard{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	return entries[0]
}

// sentMessage takes a message to "sent" with msgid.
func sentMessage(t *testing.T, s *store.Store, id string, msgid int64) {
	t.Helper()
	e := sendingMessage(t, s, id)
	require.NoError(t, settleErr(s.Settle(t.Context(), e, store.Settlement{Kind: store.SettleSent, App: "default", MsgID: msgid}, now)))
}

func report(msgid int64, status string, delivered bool, reason string) store.DeliveryReport {
	return store.DeliveryReport{App: "default", MsgID: msgid, Status: status, Delivered: delivered, Reason: reason,
		OpenID: "oUser-store-000001", ReceivedAt: now.Add(3 * time.Second)}
}

func TestApplyDelivery(t *testing.T) {
	tests := []struct {
		name   string
		report store.DeliveryReport
		status service.Status
		reason string
	}{
		{"success", report(11, "success", true, ""), service.StatusDelivered, ""},
		{"user block", report(12, "failed:user block", false, service.ReasonUserBlock), service.StatusFailed, service.ReasonUserBlock},
		{"system failed", report(13, "failed: system failed", false, service.ReasonSystemFailed), service.StatusFailed, service.ReasonSystemFailed},
		{"freq limit", report(14, "failed:freq limit", false, service.ReasonFreqLimit), service.StatusFailed, service.ReasonFreqLimit},
		{"unknown failure keeps the raw status", report(15, "failed:something new", false, service.ReasonDeliveryFailed), service.StatusFailed, service.ReasonDeliveryFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := t.Context()
			sentMessage(t, s, "m", tt.report.MsgID)

			res, err := s.ApplyDelivery(ctx, tt.report, 0)
			require.NoError(t, err)
			want := store.DeliveryFailed
			if tt.report.Delivered {
				want = store.DeliveryDelivered
			}
			assert.Equal(t, store.DeliveryResult{Outcome: want, MessageID: "m"}, res)
			m, err := s.Get(ctx, "m")
			require.NoError(t, err)
			assert.Equal(t, tt.status, m.Status)
			assert.Equal(t, tt.reason, m.Reason)
			assert.Equal(t, tt.report.Status, m.DeliveryStatus, "the raw status is kept")
			if tt.report.Delivered {
				require.NotNil(t, m.DeliveredAt)
				assert.True(t, m.DeliveredAt.Equal(tt.report.ReceivedAt), "delivered_at %v", m.DeliveredAt)
			} else {
				assert.Nil(t, m.DeliveredAt)
			}
			assert.NotNil(t, m.SentAt, "sent_at stays")

			// A second report, whatever it says, changes nothing.
			other := report(tt.report.MsgID, "failed:user block", false, service.ReasonUserBlock)
			if !tt.report.Delivered {
				other = report(tt.report.MsgID, "success", true, "")
			}
			for _, again := range []store.DeliveryReport{tt.report, other} {
				res, err = s.ApplyDelivery(ctx, again, 0)
				require.NoError(t, err)
				assert.Equal(t, store.DeliveryResult{Outcome: store.DeliveryFinal, MessageID: "m"}, res)
				after, err := s.Get(ctx, "m")
				require.NoError(t, err)
				assert.Equal(t, m, after, "a final status never changes")
			}
		})
	}
}

func TestApplyDeliveryOnlyFromSent(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	// A message that failed at send time has no msgid index: a report
	// for an unknown msgid is parked, and the message stays failed.
	e := sendingMessage(t, s, "f")
	require.NoError(t, settleErr(s.Settle(ctx, e, store.Settlement{Kind: store.SettleFail, Reason: service.ReasonPermanentErrcode}, now)))
	res, err := s.ApplyDelivery(ctx, report(77, "success", true, ""), 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryParked, res.Outcome)
	f, _ := s.Get(ctx, "f")
	assert.Equal(t, service.StatusFailed, f.Status)

	// The index names a record that has expired.
	sentMessage(t, s, "gone", 78)
	r := s.Client()
	require.NoError(t, r.Del(ctx, s.Prefix()+"msg:gone").Err())
	res, err = s.ApplyDelivery(ctx, report(78, "success", true, ""), 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryResult{Outcome: store.DeliveryGone, MessageID: "gone"}, res)
	exists, err := r.Exists(ctx, s.Prefix()+"msg:gone").Result()
	require.NoError(t, err)
	assert.Zero(t, exists, "no record is created for a gone message")
}

// TestEarlyReportIsAppliedBySettle: a report that arrives before the
// worker records the send is parked, then applied by Settle in the same
// step that writes the msgid index.
func TestEarlyReportIsAppliedBySettle(t *testing.T) {
	tests := []struct {
		name   string
		first  store.DeliveryReport
		status service.Status
		reason string
	}{
		{"delivered", report(21, "success", true, ""), service.StatusDelivered, ""},
		{"failed", report(21, "failed:user block", false, service.ReasonUserBlock), service.StatusFailed, service.ReasonUserBlock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := t.Context()
			e := sendingMessage(t, s, "early")

			res, err := s.ApplyDelivery(ctx, tt.first, 0)
			require.NoError(t, err)
			assert.Equal(t, store.DeliveryResult{Outcome: store.DeliveryParked}, res)
			// A second report for the same msgid does not replace the first.
			res, err = s.ApplyDelivery(ctx, report(21, "failed:freq limit", false, service.ReasonFreqLimit), 0)
			require.NoError(t, err)
			assert.Equal(t, store.DeliveryParked, res.Outcome)
			m, _ := s.Get(ctx, "early")
			assert.Equal(t, service.StatusSending, m.Status, "parking does not touch the message")

			settled, err := s.Settle(ctx, e, store.Settlement{Kind: store.SettleSent, App: "default", MsgID: 21}, now)
			require.NoError(t, err)
			assert.Equal(t, store.Settled{Early: store.DeliveryOutcome(tt.status), EarlyReason: tt.reason}, settled,
				"Settle says which parked report it applied, so the worker can count a message that ended there")
			m, err = s.Get(ctx, "early")
			require.NoError(t, err)
			assert.Equal(t, tt.status, m.Status)
			assert.Equal(t, tt.reason, m.Reason)
			assert.Equal(t, tt.first.Status, m.DeliveryStatus)
			assert.Equal(t, int64(21), m.MsgID)
			require.NotNil(t, m.SentAt)
			if tt.first.Delivered {
				require.NotNil(t, m.DeliveredAt)
				assert.True(t, m.DeliveredAt.Equal(tt.first.ReceivedAt))
			}
			n, err := s.Client().Exists(ctx, s.Prefix()+"early:default:21").Result()
			require.NoError(t, err)
			assert.Zero(t, n, "the parked report is consumed")

			// WeChat's retry of the report, processed after Settle: no change.
			res, err = s.ApplyDelivery(ctx, tt.first, 0)
			require.NoError(t, err)
			assert.Equal(t, store.DeliveryResult{Outcome: store.DeliveryFinal, MessageID: "early"}, res)
		})
	}
}

func TestParkedReportExpires(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	_, err := s.ApplyDelivery(ctx, report(31, "success", true, ""), time.Minute)
	require.NoError(t, err)
	ttl, err := r.Client.TTL(ctx, r.Prefix+"early:default:31").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Duration(0))
	assert.LessOrEqual(t, ttl, time.Minute)
}

func TestRecordCallbackDedupAndStream(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	rep := report(41, "failed:user block", false, service.ReasonUserBlock)

	isNew, err := s.RecordCallback(ctx, "default", "msgid:41", &rep, time.Hour)
	require.NoError(t, err)
	assert.True(t, isNew)
	isNew, err = s.RecordCallback(ctx, "default", "msgid:41", &rep, time.Hour)
	require.NoError(t, err)
	assert.False(t, isNew, "a retry is recognized")
	rep2 := rep
	rep2.App = "other-app"
	isNew, err = s.RecordCallback(ctx, "other-app", "msgid:41", &rep2, time.Hour)
	require.NoError(t, err)
	assert.True(t, isNew, "dedup keys are per app")

	// Other events are deduplicated but not queued.
	isNew, err = s.RecordCallback(ctx, "default", "event:oUser:1700000000:subscribe", nil, time.Hour)
	require.NoError(t, err)
	assert.True(t, isNew)
	isNew, err = s.RecordCallback(ctx, "default", "event:oUser:1700000000:subscribe", nil, time.Hour)
	require.NoError(t, err)
	assert.False(t, isNew)

	n, err := r.Client.XLen(ctx, r.Prefix+"callbacks").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "one stream entry per new report")

	got, err := s.ReadReports(ctx, "p1", 10, -1)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, rep, got[0].Report, "the report round-trips")
	assert.Equal(t, rep2, got[1].Report)

	// Unacknowledged reports are taken over by another consumer.
	if r.Mini != nil {
		r.Mini.SetTime(time.Now().Add(time.Minute))
	}
	minIdle := time.Second
	if r.Real() {
		minIdle = time.Millisecond
		time.Sleep(5 * time.Millisecond)
	}
	claimed, err := s.ReclaimReports(ctx, "p2", minIdle, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	require.NoError(t, s.AckReports(ctx, claimed[0].StreamID, claimed[1].StreamID))
	n, err = r.Client.XLen(ctx, r.Prefix+"callbacks").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "acknowledged reports leave the stream")
	got, err = s.ReadReports(ctx, "p1", 10, -1)
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, s.AckReports(ctx), "nothing to acknowledge")
}
