package store_test

import (
	"strconv"
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
	require.NoError(t, settleErr(s.Settle(t.Context(), e, store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: msgid}, now)))
}

// storeUser is the touser of newMsg's messages.
const storeUser = "oUser-store-000001"

func report(msgid int64, status string, delivered bool, reason string) store.DeliveryReport {
	return store.DeliveryReport{App: "default", MsgID: msgid, Status: status, Delivered: delivered, Reason: reason,
		OpenID: storeUser, ReceivedAt: now.Add(3 * time.Second)}
}

// parked lists the keys of the reports parked for msgid.
func parked(t *testing.T, s *store.Store, msgid int64) []string {
	t.Helper()
	keys, err := s.Client().Keys(t.Context(), s.Prefix()+"early:default:"+strconv.FormatInt(msgid, 10)+":*").Result()
	require.NoError(t, err)
	return keys
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

			settled, err := s.Settle(ctx, e, store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: 21}, now)
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
			assert.Empty(t, parked(t, s, 21), "the parked report is consumed")

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
	keys := parked(t, s, 31)
	require.Len(t, keys, 1)
	ttl, err := r.Client.TTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Duration(0))
	assert.LessOrEqual(t, ttl, time.Minute)
}

// record records a push whose signed query is unique to its dedup key and
// body, and returns what RecordCallback did.
func record(t *testing.T, s *store.Store, app, dedupKey string, rep *store.DeliveryReport) store.Recorded {
	t.Helper()
	got, err := s.RecordCallback(t.Context(), store.Callback{App: app, DedupKey: dedupKey, QueryID: "q-" + dedupKey, BodySum: "b-" + dedupKey, Report: rep}, time.Hour, 10*time.Minute)
	require.NoError(t, err)
	return got
}

func TestRecordCallbackDedupAndStream(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	rep := report(41, "failed:user block", false, service.ReasonUserBlock)

	assert.Equal(t, store.RecordedNew, record(t, s, "default", "msgid:41", &rep))
	assert.Equal(t, store.RecordedDuplicate, record(t, s, "default", "msgid:41", &rep), "a retry is recognized")
	rep2 := rep
	rep2.App = "other-app"
	assert.Equal(t, store.RecordedNew, record(t, s, "other-app", "msgid:41", &rep2), "dedup keys are per app")

	// Other events are deduplicated but not queued.
	assert.Equal(t, store.RecordedNew, record(t, s, "default", "event:oUser:1700000000:subscribe", nil))
	assert.Equal(t, store.RecordedDuplicate, record(t, s, "default", "event:oUser:1700000000:subscribe", nil))

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

// TestRecordCallbackReplayGuard: a signed query seen with one body and
// then with another is a replay; nothing of the second is recorded. The
// same query with the same body (WeChat's retry) stays a duplicate.
func TestRecordCallbackReplayGuard(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	real := report(51, "success", true, "")
	forged := report(52, "failed:user block", false, service.ReasonUserBlock)
	rec := func(dedup, body string, rep *store.DeliveryReport) store.Recorded {
		got, err := s.RecordCallback(ctx, store.Callback{App: "default", DedupKey: dedup, QueryID: "ts\nnonce\nsig", BodySum: body, Report: rep}, time.Hour, 10*time.Minute)
		require.NoError(t, err)
		return got
	}
	assert.Equal(t, store.RecordedNew, rec("msgid:51", "body-1", &real))
	assert.Equal(t, store.RecordedDuplicate, rec("msgid:51", "body-1", &real), "WeChat's retry: same query, same body")
	assert.Equal(t, store.RecordedReplay, rec("msgid:52", "body-2", &forged), "the captured query with another body")
	assert.Equal(t, store.RecordedReplay, rec("msgid:52", "body-2", &forged), "and again")

	got, err := s.ReadReports(ctx, "p1", 10, -1)
	require.NoError(t, err)
	require.Len(t, got, 1, "the replay appended nothing")
	assert.Equal(t, real, got[0].Report)
	// The replay did not take the forged report's dedup key either: the
	// genuine push of msgid 52, with its own query, is new.
	assert.Equal(t, store.RecordedNew, record(t, s, "default", "msgid:52", &forged))
	// Another app's identical query is its own.
	got2, err := s.RecordCallback(ctx, store.Callback{App: "other", DedupKey: "msgid:53", QueryID: "ts\nnonce\nsig", BodySum: "body-3"}, time.Hour, 10*time.Minute)
	require.NoError(t, err)
	assert.Equal(t, store.RecordedNew, got2)

	// The guard lasts its TTL.
	keys, err := r.Client.Keys(ctx, r.Prefix+"cbquery:default:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2, "the shared query, and the one of the genuine push of msgid 52")
	for _, k := range keys {
		ttl, err := r.Client.PTTL(ctx, k).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, 9*time.Minute)
		assert.LessOrEqual(t, ttl, 10*time.Minute)
	}
}

// TestReportForAnotherUserChangesNothing: a report whose FromUserName is
// not the message's touser is forged; the message keeps its status and
// the real report still applies.
func TestReportForAnotherUserChangesNothing(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	sentMessage(t, s, "m", 61)
	forged := report(61, "failed:user block", false, service.ReasonUserBlock)
	forged.OpenID = "oAttacker"
	res, err := s.ApplyDelivery(ctx, forged, 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryResult{Outcome: store.DeliveryForged, MessageID: "m"}, res)
	m, err := s.Get(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, m.Status, "a forged report changes nothing")

	res, err = s.ApplyDelivery(ctx, report(61, "success", true, ""), 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryDelivered, res.Outcome)
	// Once final, no report changes it, forged or not.
	for _, later := range []store.DeliveryReport{forged, report(61, "failed:user block", false, service.ReasonUserBlock)} {
		res, err = s.ApplyDelivery(ctx, later, 0)
		require.NoError(t, err)
		assert.Contains(t, []store.DeliveryOutcome{store.DeliveryFinal, store.DeliveryForged}, res.Outcome)
	}
	m, err = s.Get(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, service.StatusDelivered, m.Status)
}

// TestForgedEarlyReportDoesNotWin: a forged report that arrives before the
// send is recorded (and before the real report) is parked apart; Settle
// applies only the report that names the message's touser.
func TestForgedEarlyReportDoesNotWin(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	e := sendingMessage(t, s, "early")
	forged := report(71, "failed:user block", false, service.ReasonUserBlock)
	forged.OpenID = "oAttacker"
	res, err := s.ApplyDelivery(ctx, forged, 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryParked, res.Outcome)
	res, err = s.ApplyDelivery(ctx, report(71, "success", true, ""), 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryParked, res.Outcome)

	settled, err := s.Settle(ctx, e, store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: 71}, now)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryDelivered, settled.Early)
	m, err := s.Get(ctx, "early")
	require.NoError(t, err)
	assert.Equal(t, service.StatusDelivered, m.Status, "the real report, not the forged one that came first")
}

// TestForgedEarlyReportAloneIsNotApplied: a parked report for another
// openid is never applied; the message stays sent.
func TestForgedEarlyReportAloneIsNotApplied(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	e := sendingMessage(t, s, "early")
	forged := report(81, "failed:user block", false, service.ReasonUserBlock)
	forged.OpenID = "oAttacker"
	_, err := s.ApplyDelivery(ctx, forged, 0)
	require.NoError(t, err)
	settled, err := s.Settle(ctx, e, store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: 81}, now)
	require.NoError(t, err)
	assert.Equal(t, store.Settled{}, settled)
	m, err := s.Get(ctx, "early")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, m.Status)
}
