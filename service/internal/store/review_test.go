package store_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// TestReviewStaleSettleFromBeforeARedriveIsFenced: worker A began attempt 1
// and stalled; worker B reclaimed the entry, made attempt 2 and failed the
// message; an operator redrove it and worker C began its attempt 1. A's late
// outcome must be stale: the redrive reset attempts to 0, so C's attempt
// has the number A's had, and the attempt fence takes A's outcome for C's.
func TestReviewStaleSettleFromBeforeARedriveIsFenced(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserABA-0000001", "tpl", "", t0})
	entries, err := s.Read(ctx, "a", 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	_, first, err := s.Begin(ctx, id, t0, store.Guard{}) // A
	require.NoError(t, err)
	require.Equal(t, 1, first)

	// B takes the same entry over and fails the message.
	if r.Mini != nil {
		r.Mini.SetTime(time.Now().Add(2 * time.Minute))
	} else {
		time.Sleep(50 * time.Millisecond)
	}
	minIdle := time.Minute
	if r.Real() {
		minIdle = 20 * time.Millisecond
	}
	claimed, err := s.Reclaim(ctx, "b", minIdle, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	_, second, err := s.Begin(ctx, id, t0.Add(time.Minute), store.Guard{})
	require.NoError(t, err)
	require.Equal(t, 2, second)
	require.NoError(t, settleErr(s.Settle(ctx, claimed[0], store.Settlement{Kind: store.SettleFail, Reason: service.ReasonAttemptsExhausted, App: "shop", Attempt: second}, t0.Add(time.Minute))))

	// The operator redrives it; C begins.
	_, err = s.Redrive(ctx, id, true, "r", t0.Add(2*time.Minute))
	require.NoError(t, err)
	again, err := s.Read(ctx, "c", 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, again, 1)
	_, third, err := s.Begin(ctx, id, t0.Add(2*time.Minute), store.Guard{})
	require.NoError(t, err)

	// A wakes up with its attempt-1 outcome.
	_, err = s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleFail, Reason: service.ReasonPermanentErrcode, App: "shop", Attempt: first}, t0.Add(3*time.Minute))
	assert.ErrorIs(t, err, store.ErrStale, "A's attempt %d is not C's attempt %d: it began before the redrive", first, third)
	m, err := s.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, service.StatusSending, m.Status, "C's attempt is in flight: a stale outcome must not settle it")
}

// TestReviewTimeFiltersAgreeWithTheIndex: the API takes AcceptedAt (the
// record's created_at) before it makes the id (NewID(time.Now()) per
// message, later, and a batch shares one AcceptedAt), so an id's time can be
// a millisecond or more after created_at. The index ranges by the id's time
// and matches filters by created_at: adjacent windows [.., T) and [T, ..)
// must between them find every message.
func TestReviewTimeFiltersAgreeWithTheIndex(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	accepted := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	idAt := accepted.Add(2 * time.Millisecond) // the id is made after AcceptedAt
	id := store.NewID(idAt)
	_, err := s.Enqueue(ctx, []store.NewMessage{{
		ID: id, App: "shop", RequestHash: "h", AcceptedAt: accepted,
		Request: service.SendRequest{App: "shop", ToUser: "oUserWin-000001", TemplateID: "tpl", Data: map[string]service.DataValue{"k": {Value: "v"}}},
	}})
	require.NoError(t, err)
	split := accepted.Add(time.Millisecond)
	for _, base := range []service.MessageQuery{{}, {ToUser: "oUserWin-000001"}} {
		before, until := base, base
		before.Until, until.Since = split, split
		p1, err := s.Search(ctx, before)
		require.NoError(t, err)
		p2, err := s.Search(ctx, until)
		require.NoError(t, err)
		assert.Equal(t, []string{id}, append(ids(p1), ids(p2)...),
			"touser %q: until %v and since %v together find the message (created %v, id time %v) exactly once", base.ToUser, split, split, accepted, idAt)
	}
}

// TestReviewTrimKeepsALiveDeadLetter: a record lives Retention after its
// last update, and a redrive is an update, so a dead letter redriven late
// outlives twice the Retention after its acceptance, which is when
// TrimIndexes drops it from ix:all and ix:st:failed: it is still failed,
// but /v1/deadletters and the bulk redrive no longer see it.
func TestReviewTrimKeepsALiveDeadLetter(t *testing.T) {
	s, _ := newStore(t) // Retention 7 days
	ctx := t.Context()
	accepted := time.Now().Add(-13 * 24 * time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserTrim-00001", "tpl", "", accepted})
	fail(t, s, id, service.ReasonAttemptsExhausted, accepted.Add(time.Hour))
	// Redriven 6 days later, failed again, redriven 6 days after that
	// (each time within the record's retention), and failed again.
	_, err := s.Redrive(ctx, id, false, "r1", accepted.Add(6*24*time.Hour))
	require.NoError(t, err)
	fail(t, s, id, service.ReasonAttemptsExhausted, accepted.Add(6*24*time.Hour+time.Hour))
	_, err = s.Redrive(ctx, id, false, "r2", accepted.Add(12*24*time.Hour))
	require.NoError(t, err)
	fail(t, s, id, service.ReasonAttemptsExhausted, accepted.Add(12*24*time.Hour+time.Hour))

	later := time.Now().Add(2 * 24 * time.Hour) // the record lives until now+7d
	require.NoError(t, s.TrimIndexes(ctx, later))
	m, err := s.Get(ctx, id)
	require.NoError(t, err, "the record is alive")
	require.Equal(t, service.StatusFailed, m.Status)
	page, err := s.Search(ctx, service.MessageQuery{Status: service.StatusFailed})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, ids(page), "a live dead letter stays listed")
}

// TestReviewRedriveOfAReportedFailureIsNotRefusedByAnOldAmbiguity: an
// attempt's answer was lost (ambiguous_at), the next attempt was accepted by
// WeChat (msgid: the ambiguity is resolved) and the delivery report failed
// it (system_failed: no force needed). The redrive gets a new client_msg_id,
// yet keeps ambiguous_at, so the guard refuses the resend and the worker
// fails it as unconfirmed: a redrive answered 200 that can never send.
func TestReviewRedriveOfAReportedFailureIsNotRefusedByAnOldAmbiguity(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserAmb-000001", "tpl", "", t0})
	settleNext(t, s, id, store.Settlement{Kind: store.SettleRetry, Due: t0, AmbiguousAt: t0, Called: true}, t0.Add(time.Second))
	n, err := s.MoveDue(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	settleNext(t, s, id, store.Settlement{Kind: store.SettleSent, MsgID: 777, Called: true}, t0.Add(2*time.Second))
	_, err = s.ApplyDelivery(ctx, store.DeliveryReport{App: "shop", MsgID: 777, Status: "failed:system failed", Reason: service.ReasonSystemFailed, OpenID: "oUserAmb-000001", ReceivedAt: t0.Add(3 * time.Second)}, 0)
	require.NoError(t, err)

	_, err = s.Redrive(ctx, id, false, "r", time.Now())
	require.NoError(t, err)
	rec, attempt, err := s.Begin(ctx, id, time.Now(), store.Guard{Window: 10 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, id+"-1", rec.ClientMsgID)
	assert.Equal(t, 1, attempt-rec.AttemptBase, "the resend carries a new client_msg_id after a confirmed send: the old ambiguity cannot refuse it")
}

// TestReviewBulkRedriveIsBounded: a bulk redrive is to be "bounded"
// (issue 15), and Search bounds each page's scan for that reason, but
// RedriveBulk follows scan-bound cursors until the failed index is
// exhausted: one call for a rare app reads every dead letter of every
// other app (HGETALL each), with no time limit on the route. It should
// stop at the scan bound and hand back the cursor.
func TestReviewBulkRedriveIsBounded(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	rare := enqueueOp(t, s, opMsg{"rare", "oUserBulk-00001", "tpl", "", t0})
	fail(t, s, rare, service.ReasonAttemptsExhausted, t0.Add(time.Minute))
	// 5,500 newer dead letters of another app, as settle leaves them.
	for i := 1; i <= 5500; i += 500 {
		msgs := make([]store.NewMessage, 0, 500)
		for j := range 500 {
			at := t0.Add(time.Duration(i+j) * time.Millisecond)
			msgs = append(msgs, store.NewMessage{ID: store.NewID(at), App: "big", RequestHash: "h", AcceptedAt: at,
				Request: service.SendRequest{App: "big", ToUser: "oUserBulk-00002", TemplateID: "tpl", Data: map[string]service.DataValue{"k": {Value: "v"}}}})
		}
		_, err := s.Enqueue(ctx, msgs)
		require.NoError(t, err)
		pipe := s.Client().Pipeline()
		for _, m := range msgs {
			pipe.HSet(ctx, s.Prefix()+"msg:"+m.ID, "status", "failed", "reason", service.ReasonAttemptsExhausted)
			pipe.ZAdd(ctx, s.Prefix()+"ix:st:failed", redis.Z{Member: m.ID})
		}
		_, err = pipe.Exec(ctx)
		require.NoError(t, err)
	}
	res, err := s.RedriveBulk(ctx, service.BulkRedriveRequest{App: "rare", Limit: 10}, "r", time.Now())
	require.NoError(t, err)
	assert.NotEmpty(t, res.NextCursor, "one call scans at most one page's bound of the index, then hands back a cursor: %+v", res)
	assert.Zero(t, res.Redriven, "the rare app's dead letter lies past the first 5,000 members scanned: %+v", res)
}

// TestReviewForceForAPermanentErrorKeepsTheDuplicateGuard: attempt 1's
// answer was lost (it may have reached the user), attempt 2 got a
// permanent errcode. The operator fixes the cause and forces the redrive,
// told that force is for a failure that "cannot succeed as it is"; nothing
// says this message may already have been delivered. The forced redrive
// clears ambiguous_at all the same, so a resend past WeChat's dedup
// window (same client_msg_id, expired dedup) goes out: a second copy. Only
// a redrive of an unconfirmed failure, where the operator was told, should
// drop the guard.
func TestReviewForceForAPermanentErrorKeepsTheDuplicateGuard(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	id := enqueueOp(t, s, opMsg{"shop", "oUserPerm-00001", "tpl", "", t0})
	settleNext(t, s, id, store.Settlement{Kind: store.SettleRetry, Due: t0, AmbiguousAt: t0, Called: true}, t0.Add(time.Second))
	n, err := s.MoveDue(ctx, time.Now(), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	fail(t, s, id, service.ReasonPermanentErrcode, t0.Add(2*time.Second))

	_, err = s.Redrive(ctx, id, true, "r", time.Now())
	require.NoError(t, err)
	rec, attempt, err := s.Begin(ctx, id, time.Now(), store.Guard{Window: 10 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, id, rec.ClientMsgID, "the same client_msg_id, whose dedup window ended long ago")
	assert.Equal(t, store.AttemptRefused, attempt, "attempt 1 may have reached the user: forcing past a permanent errcode must not silently resend it")
}
