package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

func TestRedriveRules(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	n := 0
	failedWith := func(reason string) string {
		n++
		id := enqueueOp(t, s, opMsg{"shop", "oUserR-00000000" + string(rune('0'+n)), "tpl", "", t0.Add(time.Duration(n) * time.Millisecond)})
		fail(t, s, id, reason, t0.Add(time.Minute))
		return id
	}

	t.Run("a transient failure is redriven without force", func(t *testing.T) {
		id := failedWith(service.ReasonAttemptsExhausted)
		m, err := s.Redrive(ctx, id, false, "req-redrive", t0.Add(2*time.Minute))
		require.NoError(t, err)
		assert.Equal(t, service.StatusQueued, m.Status)
		assert.Equal(t, 0, m.Attempts, "attempts reset")
		assert.Empty(t, m.Reason)
		assert.Equal(t, 1, m.Redrives)
		last := m.History[len(m.History)-1]
		assert.Equal(t, service.HistoryRedrive, last.Type)
		assert.Equal(t, "req-redrive", last.RequestID)
		assert.Equal(t, service.ReasonAttemptsExhausted, last.Reason, "the failure it had")
		assert.False(t, last.Forced)
		// Back in the queue under the same id, and out of the dead letters.
		entries, err := s.Read(ctx, "w", 10, 10*time.Millisecond)
		require.NoError(t, err)
		require.Len(t, entries, 1)
		assert.Equal(t, id, entries[0].MessageID)
		dead, err := s.Search(ctx, service.MessageQuery{Status: service.StatusFailed})
		require.NoError(t, err)
		assert.NotContains(t, ids(dead), id)
		queued, err := s.Search(ctx, service.MessageQuery{Status: service.StatusQueued})
		require.NoError(t, err)
		assert.Contains(t, ids(queued), id)
		// The second run counts its own attempts from 1.
		rec, attempt, err := s.Begin(ctx, id, time.Now(), store.Guard{})
		require.NoError(t, err)
		assert.Equal(t, 2, attempt, "the attempt numbers that fence settlements never go back")
		assert.Equal(t, 1, rec.AttemptBase, "this run counts from the redrive")
		assert.Equal(t, id, rec.ClientMsgID, "never sent: the same client_msg_id, so WeChat's dedup still covers an earlier attempt")
		require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleSent, App: "shop", ToUser: rec.ToUser, MsgID: 9, Attempt: attempt}, time.Now())))
		m, err = s.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, 1, m.Attempts, "one attempt in this run")
	})

	for _, reason := range []string{service.ReasonUnconfirmed, service.ReasonNotFollowing, service.ReasonPermanentErrcode, service.ReasonUserBlock} {
		t.Run(reason+" needs force", func(t *testing.T) {
			id := failedWith(reason)
			before, err := s.Get(ctx, id)
			require.NoError(t, err)
			_, err = s.Redrive(ctx, id, false, "r", time.Now())
			require.ErrorIs(t, err, store.ErrForceRequired)
			after, err := s.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, before, after, "a refused redrive changes nothing")

			m, err := s.Redrive(ctx, id, true, "r", time.Now())
			require.NoError(t, err)
			assert.Equal(t, service.StatusQueued, m.Status)
			assert.True(t, m.History[len(m.History)-1].Forced)
			entries, err := s.Read(ctx, "w", 10, 10*time.Millisecond)
			require.NoError(t, err)
			require.Len(t, entries, 1)
			require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleDrop}, time.Now())))
		})
	}

	t.Run("a message that has not failed", func(t *testing.T) {
		id := enqueueOp(t, s, opMsg{"shop", "oUserR-000000099", "tpl", "", t0})
		_, err := s.Redrive(ctx, id, true, "r", time.Now())
		require.ErrorIs(t, err, store.ErrNotFailed)
		_, err = s.Redrive(ctx, store.NewID(time.Now()), true, "r", time.Now())
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestForcedRedriveOfAnUnconfirmedMessageLetsTheGuardResend(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserU-000000001", "tpl", "", t0})
	// An attempt whose answer was lost, long ago: the guard refuses a resend.
	settleNext(t, s, id, store.Settlement{Kind: store.SettleFail, Reason: service.ReasonUnconfirmed, AmbiguousAt: t0, Called: true}, t0.Add(time.Second))
	_, err := s.Redrive(ctx, id, true, "r", time.Now())
	require.NoError(t, err)
	rec, attempt, err := s.Begin(ctx, id, time.Now(), store.Guard{Window: 10 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, 1, attempt-rec.AttemptBase, "the operator's force clears the unknown attempt: the resend may begin")
}

func TestRedriveOfAReportedFailureGetsANewClientMsgID(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserF-000000001", "tpl", "", t0})
	settleNext(t, s, id, store.Settlement{Kind: store.SettleSent, MsgID: 4242, Called: true}, t0.Add(time.Second))
	_, err := s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 4242, Status: "failed:system failed", Reason: service.ReasonSystemFailed, OpenID: "oUserF-000000001", ReceivedAt: t0.Add(2 * time.Second)}, 0)
	require.NoError(t, err)
	dead, err := s.Search(ctx, service.MessageQuery{Status: service.StatusFailed})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, ids(dead), "a failure by delivery report is a dead letter")

	m, err := s.Redrive(ctx, id, false, "r", time.Now())
	require.NoError(t, err)
	assert.Zero(t, m.MsgID)
	assert.Nil(t, m.SentAt)
	assert.Empty(t, m.DeliveryStatus)
	rec, err := s.Load(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, id+"-1", rec.ClientMsgID, "WeChat accepted the first send: the resend needs its own client_msg_id, or WeChat's dedup swallows it")
	_, err = s.MessageByMsgID(ctx, "shop", 4242)
	assert.ErrorIs(t, err, store.ErrNotFound, "the old msgid no longer names the message")
	// A late copy of the old report cannot touch the resent message.
	settleNext(t, s, id, store.Settlement{Kind: store.SettleSent, MsgID: 5000, Called: true}, time.Now())
	res, err := s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 4242, Status: "failed:system failed", Reason: service.ReasonSystemFailed, OpenID: "oUserF-000000001", ReceivedAt: time.Now()}, 0)
	require.NoError(t, err)
	assert.Equal(t, store.DeliveryParked, res.Outcome)
	m, err = s.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, m.Status)
}

func TestRedriveBulk(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	var transient, unconfirmed []string
	for i := range 10 {
		app := "shop"
		if i == 9 {
			app = "crm"
		}
		id := enqueueOp(t, s, opMsg{app, "oUserX-000000001", "tpl", "", t0.Add(time.Duration(i) * time.Millisecond)})
		if i%3 == 2 {
			fail(t, s, id, service.ReasonUnconfirmed, t0.Add(time.Minute))
			unconfirmed = append(unconfirmed, id)
		} else {
			fail(t, s, id, service.ReasonAttemptsExhausted, t0.Add(time.Minute))
			transient = append(transient, id)
		}
	}
	// shop: 6 transient, 3 unconfirmed; crm: 1 transient.
	res, err := s.RedriveBulk(ctx, service.BulkRedriveRequest{App: "shop", Limit: 5}, "bulk-1", time.Now())
	require.NoError(t, err)
	assert.Equal(t, 5, res.Matched)
	assert.NotEmpty(t, res.NextCursor)
	first := res.Redriven

	res2, err := s.RedriveBulk(ctx, service.BulkRedriveRequest{App: "shop", Cursor: res.NextCursor}, "bulk-1", time.Now())
	require.NoError(t, err)
	assert.Equal(t, 4, res2.Matched)
	assert.Empty(t, res2.NextCursor)
	assert.Equal(t, 6, first+res2.Redriven, "every transient failure of shop")
	assert.Equal(t, 3, res.Skipped[service.CodeForceRequired]+res2.Skipped[service.CodeForceRequired], "the unconfirmed ones wait for force")

	left, err := s.Search(ctx, service.MessageQuery{Status: service.StatusFailed})
	require.NoError(t, err)
	assert.ElementsMatch(t, append(append([]string{}, unconfirmed...), transient[len(transient)-1]), ids(left), "crm's failure and the unconfirmed ones stay")

	forced, err := s.RedriveBulk(ctx, service.BulkRedriveRequest{Reason: service.ReasonUnconfirmed, Force: true}, "bulk-2", time.Now())
	require.NoError(t, err)
	assert.Equal(t, 3, forced.Redriven)
	assert.ElementsMatch(t, unconfirmed, forced.IDs)

	_, err = s.RedriveBulk(ctx, service.BulkRedriveRequest{Limit: 1001}, "", time.Now())
	var qe *store.QueryError
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, "limit", qe.Field)
}

// TestConcurrentRedrivesQueueOnce: many operators (or one impatient
// script) redrive the same failed message at once: one redrive wins, the
// others are told it is no longer failed, and the queue holds one entry.
func TestConcurrentRedrivesQueueOnce(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	id := enqueueOp(t, s, opMsg{"shop", "oUserC-000000042", "tpl", "", time.Now().Add(-time.Hour)})
	fail(t, s, id, service.ReasonAttemptsExhausted, time.Now())
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.Redrive(ctx, id, true, "r", time.Now())
			errs <- err
		}()
	}
	won := 0
	for range n {
		err := <-errs
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, store.ErrNotFailed)
	}
	assert.Equal(t, 1, won)
	entries, err := s.Read(ctx, "w", 10, 10*time.Millisecond)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "one queue entry: the message is sent once")
	m, err := s.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, 1, m.Redrives)
}
