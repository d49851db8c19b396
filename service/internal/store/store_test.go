package store_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// settleErr drops Settle's report of what it applied, for tests that
// check only that it recorded.
func settleErr(_ store.Settled, err error) error { return err }

func newStore(t *testing.T) (*store.Store, *redistest.Redis) {
	r := redistest.New(t)
	return store.New(r.Client, store.Options{Prefix: r.Prefix, IdempotencyTTL: time.Hour}), r
}

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newMsg(id, key, hash string) store.NewMessage {
	return store.NewMessage{
		ID: id, App: "default", IdempotencyKey: key, RequestHash: hash, AcceptedAt: now,
		Request: service.SendRequest{App: "default", ToUser: "oUser-store-000001", TemplateID: "tpl",
			Data: map[string]service.DataValue{"thing1": {Value: "<a>&b"}}},
	}
}

func TestNewIDIsSortableAndUnique(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		id := store.NewID(now.Add(time.Duration(i) * time.Millisecond))
		require.Len(t, id, 26)
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
		require.Greater(t, id, prev, "ids sort by time")
		prev = id
	}
}

func TestEnqueueAndGet(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	res, err := s.Enqueue(ctx, []store.NewMessage{newMsg("m1", "", "h1")})
	require.NoError(t, err)
	assert.Equal(t, []store.EnqueueResult{{Outcome: store.Created, ID: "m1"}}, res)

	got, err := s.Get(ctx, "m1")
	require.NoError(t, err)
	assert.Equal(t, "m1", got.ID)
	assert.Equal(t, service.StatusQueued, got.Status)
	assert.Equal(t, "oUser-store-000001", got.ToUser)
	assert.Equal(t, 0, got.Attempts)
	assert.True(t, got.CreatedAt.Equal(now))
	rec, err := s.Load(ctx, "m1")
	require.NoError(t, err)
	assert.Equal(t, "<a>&b", rec.Request.Data["thing1"].Value)

	_, err = s.Get(ctx, "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestEnqueueIdempotency(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	res, err := s.Enqueue(ctx, []store.NewMessage{newMsg("m1", "k1", "h1")})
	require.NoError(t, err)
	require.Equal(t, store.Created, res[0].Outcome)

	res, err = s.Enqueue(ctx, []store.NewMessage{newMsg("m2", "k1", "h1"), newMsg("m3", "k1", "other"), newMsg("m4", "k2", "h1")})
	require.NoError(t, err)
	assert.Equal(t, []store.EnqueueResult{
		{Outcome: store.Replayed, ID: "m1"},
		{Outcome: store.Conflict, ID: "m1"},
		{Outcome: store.Created, ID: "m4"},
	}, res)
	_, err = s.Get(ctx, "m2")
	assert.ErrorIs(t, err, store.ErrNotFound, "a replay stores nothing")
	_, err = s.Get(ctx, "m3")
	assert.ErrorIs(t, err, store.ErrNotFound, "a conflict stores nothing")
}

func TestEnqueueConcurrentSameKey(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[store.Outcome]int{}
	ids := map[string]bool{}
	for i := range 50 {
		wg.Go(func() {
			res, err := s.Enqueue(t.Context(), []store.NewMessage{newMsg("c"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), "same", "h")})
			assert.NoError(t, err)
			mu.Lock()
			outcomes[res[0].Outcome]++
			ids[res[0].ID] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, 1, outcomes[store.Created], "exactly one request creates the message")
	assert.Equal(t, 49, outcomes[store.Replayed])
	assert.Len(t, ids, 1, "every answer names the same message")
	st, err := s.Stats(t.Context(), now)
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Backlog, "one stream entry")
}

func TestQueueLifecycle(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("a", "", "h"), newMsg("b", "", "h"), newMsg("c", "", "h")})
	require.NoError(t, err)
	require.NoError(t, s.EnsureGroup(ctx))
	require.NoError(t, s.EnsureGroup(ctx), "EnsureGroup is idempotent")

	entries, err := s.Read(ctx, "w1", 10, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, 3)
	assert.Equal(t, []string{"a", "b", "c"}, []string{entries[0].MessageID, entries[1].MessageID, entries[2].MessageID})

	n, _, err := s.MarkSending(ctx, "a", now, store.Guard{})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleSent, App: "default", MsgID: 3717005636572528642}, now.Add(time.Second))))
	a, err := s.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, a.Status)
	assert.Equal(t, int64(3717005636572528642), a.MsgID)
	require.NotNil(t, a.SentAt)
	id, err := s.MessageByMsgID(ctx, "default", 3717005636572528642)
	require.NoError(t, err)
	assert.Equal(t, "a", id, "the msgid index points back to the message")

	_, _, _ = s.MarkSending(ctx, "b", now, store.Guard{})
	require.NoError(t, settleErr(s.Settle(ctx, entries[1], store.Settlement{Kind: store.SettleRetry, Due: now.Add(time.Minute), HasErr: true, ErrCode: -1, ErrMsg: "system error"}, now)))
	b, _ := s.Get(ctx, "b")
	assert.Equal(t, service.StatusRetrying, b.Status)
	assert.Equal(t, &service.SendError{ErrCode: -1, ErrMsg: "system error"}, b.LastError)
	assert.Equal(t, 1, b.Attempts)

	_, _, _ = s.MarkSending(ctx, "c", now, store.Guard{})
	require.NoError(t, settleErr(s.Settle(ctx, entries[2], store.Settlement{Kind: store.SettleFail, Reason: service.ReasonPermanentErrcode, HasErr: true, ErrCode: 43004, ErrMsg: "require subscribe"}, now)))
	c, _ := s.Get(ctx, "c")
	assert.Equal(t, service.StatusFailed, c.Status)
	assert.Equal(t, service.ReasonPermanentErrcode, c.Reason)
	dead, err := s.DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "c", dead[0]["id"])
	assert.Equal(t, service.ReasonPermanentErrcode, dead[0]["reason"])

	st, err := s.Stats(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, store.QueueStats{Delayed: 1}, st, "settled entries leave the stream")

	moved, err := s.MoveDue(ctx, now.Add(59*time.Second), 10)
	require.NoError(t, err)
	assert.Equal(t, 0, moved, "not due yet")
	moved, err = s.MoveDue(ctx, now.Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Equal(t, 1, moved)
	again, err := s.Read(ctx, "w1", 10, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, again, 1)
	assert.Equal(t, "b", again[0].MessageID)

	n, _, err = s.MarkSending(ctx, "a", now, store.Guard{})
	require.NoError(t, err)
	assert.Equal(t, -1, n, "a final record is not marked sending again (reclaim race)")
	n, _, err = s.MarkSending(ctx, "no-such-message", now, store.Guard{})
	require.NoError(t, err)
	assert.Equal(t, 0, n)

	// A final record is never overwritten by a late settlement.
	require.NoError(t, settleErr(s.Settle(ctx, store.Entry{StreamID: "0-1", MessageID: "a"}, store.Settlement{Kind: store.SettleFail, Reason: "x"}, now)))
	a, _ = s.Get(ctx, "a")
	assert.Equal(t, service.StatusSent, a.Status)
}

func TestRefundedRetryDoesNotCountAnAttempt(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("q", "", "h")})
	require.NoError(t, err)
	entries, err := s.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err)
	_, _, _ = s.MarkSending(ctx, "q", now, store.Guard{})
	require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleRetry, Due: now, Refund: true}, now)))
	q, _ := s.Get(ctx, "q")
	assert.Equal(t, 0, q.Attempts, "pacing and quota waits are not attempts")
}

func TestReclaimAndRelease(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("x", "", "h"), newMsg("y", "", "h")})
	require.NoError(t, err)
	got, err := s.Read(ctx, "dead-worker", 10, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, got, 2)

	none, err := s.Reclaim(ctx, "rescuer", time.Hour, 10)
	require.NoError(t, err)
	assert.Empty(t, none, "entries younger than the visibility timeout stay with their worker")
	if r.Mini != nil {
		r.Mini.SetTime(time.Now().Add(2 * time.Minute))
	} else {
		time.Sleep(50 * time.Millisecond)
	}
	minIdle := time.Minute
	if r.Real() {
		minIdle = 20 * time.Millisecond
	}
	claimed, err := s.Reclaim(ctx, "rescuer", minIdle, 10)
	require.NoError(t, err)
	assert.Len(t, claimed, 2, "a dead worker's entries are reclaimed")

	require.NoError(t, s.Release(ctx, claimed[0]))
	fresh, err := s.Read(ctx, "other", 10, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, fresh, 1, "a released entry is immediately available to others")
	assert.Equal(t, claimed[0].MessageID, fresh[0].MessageID)
}

func TestRecoversFromLostGroup(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	require.NoError(t, s.EnsureGroup(ctx))
	// Redis restarted empty: the stream and the group are gone.
	iter := r.Client.Scan(ctx, 0, r.Prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		r.Client.Del(ctx, iter.Val())
	}
	got, err := s.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err, "NOGROUP is repaired, not returned")
	assert.Empty(t, got)
	_, err = s.Enqueue(ctx, []store.NewMessage{newMsg("after", "", "h")})
	require.NoError(t, err)
	got, err = s.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, got, 1)
	_, err = s.Reclaim(ctx, "w", time.Minute, 1)
	require.NoError(t, err)
}

func TestUnavailable(t *testing.T) {
	r := redistest.New(t)
	if r.Real() {
		t.Skip("needs miniredis to simulate an outage")
	}
	// No retries: an outage should be reported at once (the API answers 503).
	c := redis.NewClient(&redis.Options{Addr: r.Mini.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	s := store.New(c, store.Options{Prefix: r.Prefix})
	r.Mini.Close()
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("z", "", "h")})
	assert.ErrorIs(t, err, store.ErrUnavailable)
	_, err = s.Enqueue(ctx, []store.NewMessage{newMsg("z", "", "h"), newMsg("z2", "", "h")})
	assert.ErrorIs(t, err, store.ErrUnavailable)
	_, err = s.Get(ctx, "z")
	assert.ErrorIs(t, err, store.ErrUnavailable)
	assert.ErrorIs(t, s.Ping(ctx), store.ErrUnavailable)
	_, err = s.Read(ctx, "w", 1, time.Millisecond)
	assert.ErrorIs(t, err, store.ErrUnavailable)
	require.NoError(t, r.Mini.Restart())
	// go-redis backs off dialing for a moment after failures: poll.
	assert.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 10*time.Second, 50*time.Millisecond, "recovers once Redis is back")
}

// TestStaleSettleIsFenced: worker A took a message and stalled past the
// visibility timeout; worker B reclaimed it and began a second attempt.
// A's late outcome (here a permanent failure) must change nothing — not
// the record, not the acknowledgement — and B's outcome stands.
func TestStaleSettleIsFenced(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("f", "", "h")})
	require.NoError(t, err)
	entries, err := s.Read(ctx, "a", 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	first, _, err := s.MarkSending(ctx, "f", now, store.Guard{})
	require.NoError(t, err)
	require.Equal(t, 1, first)

	// B takes over: the same stream entry, a second attempt.
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
	second, _, err := s.MarkSending(ctx, "f", now, store.Guard{})
	require.NoError(t, err)
	require.Equal(t, 2, second)

	_, err = s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleFail, Reason: "permanent_errcode", App: "default", Attempt: first}, now)
	require.ErrorIs(t, err, store.ErrStale)
	rec, err := s.Get(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSending, rec.Status, "the stale failure changed nothing")
	st, err := s.Stats(ctx, now)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Pending, "and did not acknowledge B's entry")

	require.NoError(t, settleErr(s.Settle(ctx, claimed[0], store.Settlement{Kind: store.SettleSent, MsgID: 42, App: "default", Attempt: second}, now)))
	rec, err = s.Get(ctx, "f")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSent, rec.Status, "B's outcome stands")
	assert.EqualValues(t, 42, rec.MsgID)
}

// TestBeginIsLoadThenMarkSending: Begin returns the record as Load did
// before the attempt and counts the attempt as MarkSending does; a final
// record is returned unchanged with -1, a missing one is ErrNotFound.
func TestBeginIsLoadThenMarkSending(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("b1", "", "h")})
	require.NoError(t, err)

	loaded, err := s.Load(ctx, "b1")
	require.NoError(t, err)
	rec, n, err := s.Begin(ctx, "b1", now.Add(time.Second), store.Guard{})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, loaded, rec, "the record as it was before the attempt")
	after, err := s.Load(ctx, "b1")
	require.NoError(t, err)
	assert.Equal(t, service.StatusSending, after.Status)
	assert.Equal(t, 1, after.Attempts)
	assert.True(t, after.UpdatedAt.Equal(now.Add(time.Second)), "updated_at %v", after.UpdatedAt)

	rec, n, err = s.Begin(ctx, "b1", now.Add(2*time.Second), store.Guard{})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, service.StatusSending, rec.Status)

	entries, err := s.Read(ctx, "c", 10, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleFail, Reason: "x", App: "default"}, now)))
	final, err := s.Load(ctx, "b1")
	require.NoError(t, err)
	rec, n, err = s.Begin(ctx, "b1", now.Add(3*time.Second), store.Guard{})
	require.NoError(t, err)
	assert.Equal(t, -1, n, "a final record is not attempted again")
	assert.Equal(t, final, rec)
	unchanged, err := s.Load(ctx, "b1")
	require.NoError(t, err)
	assert.Equal(t, final, unchanged, "Begin changed nothing")

	_, _, err = s.Begin(ctx, "no-such-message", now, store.Guard{})
	assert.ErrorIs(t, err, store.ErrNotFound)
}
