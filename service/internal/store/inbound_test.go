package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/store"
)

const inboundUser = "oUser-inbound-00001"

// push is a subscribe-like push of inboundUser at CreateTime ct.
func push(dedup string, ct int64, follow string, forward bool) store.Push {
	return store.Push{
		App: "default", DedupKey: dedup, QueryID: "q-" + dedup, BodySum: "sum-" + dedup, OpenID: inboundUser,
		CreateTime: ct, Type: "subscribe", Follow: follow, Forward: forward,
		Payload: []byte(`{"id":"` + dedup + `"}`), ReceivedAt: now,
	}
}

func recordPush(t *testing.T, s *store.Store, p store.Push) store.Recorded {
	t.Helper()
	r, err := s.RecordPush(t.Context(), p, time.Hour, time.Hour)
	require.NoError(t, err)
	return r
}

// TestRecordPushDedupAndQueue: a push is queued once whatever number of
// retries come (a retry's new query, or the same query and body), a replay
// (same query, other body) writes nothing, and the queue keeps the
// arrival order under one token.
func TestRecordPushDedupAndQueue(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	require.Equal(t, store.RecordedNew, recordPush(t, s, push("a", 100, "", true)))
	retry := push("a", 100, "", true)
	retry.QueryID = "q-a-retry"
	require.Equal(t, store.RecordedDuplicate, recordPush(t, s, retry), "WeChat's retry with a fresh query")
	require.Equal(t, store.RecordedDuplicate, recordPush(t, s, push("a", 100, "", true)), "the same request again")
	replay := push("b", 101, "", true)
	replay.QueryID = "q-a"
	require.Equal(t, store.RecordedReplay, recordPush(t, s, replay), "a captured query with another body")
	require.Equal(t, store.RecordedNew, recordPush(t, s, push("c", 99, "", true)))

	n, err := s.PendingInbound(ctx, "default", inboundUser)
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "a and c queued once each; the replay not at all")

	toks, err := s.ReadInbound(ctx, "f1", 10, -1)
	require.NoError(t, err)
	require.Len(t, toks, 1, "one token per user queue")
	p, _, err := s.NextInbound(ctx, toks[0].Queue)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryID("default", "a"), p.ID, "arrival order, not CreateTime order")
	require.JSONEq(t, `{"id":"a"}`, string(p.Payload))
	left, err := s.FinishInbound(ctx, toks[0], p.ID)
	require.NoError(t, err)
	require.Equal(t, 1, left)
	p, _, err = s.NextInbound(ctx, toks[0].Queue)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryID("default", "c"), p.ID)
	left, err = s.FinishInbound(ctx, toks[0], p.ID)
	require.NoError(t, err)
	require.Equal(t, 0, left)
	p, _, err = s.NextInbound(ctx, toks[0].Queue)
	require.NoError(t, err)
	require.Nil(t, p)

	// The token was acknowledged with the empty queue: nothing to reclaim,
	// and the next push gets a new token.
	got, err := s.ReclaimInbound(ctx, "f2", 0, 10)
	require.NoError(t, err)
	require.Empty(t, got)
	require.Equal(t, store.RecordedNew, recordPush(t, s, push("d", 102, "", true)))
	toks, err = s.ReadInbound(ctx, "f1", 10, -1)
	require.NoError(t, err)
	require.Len(t, toks, 1)
}

// TestRecordPushWithoutForward: an app without an event webhook queues
// nothing, but dedups and keeps the follower state.
func TestRecordPushWithoutForward(t *testing.T) {
	s, _ := newStore(t)
	require.Equal(t, store.RecordedNew, recordPush(t, s, push("a", 100, store.FollowUnsubscribe, false)))
	require.Equal(t, store.RecordedDuplicate, recordPush(t, s, push("a", 100, store.FollowUnsubscribe, false)))
	n, err := s.PendingInbound(t.Context(), "default", inboundUser)
	require.NoError(t, err)
	require.Zero(t, n)
	toks, err := s.ReadInbound(t.Context(), "f1", 10, -1)
	require.NoError(t, err)
	require.Empty(t, toks)
	f, err := s.ReadFollower(t.Context(), "default", inboundUser)
	require.NoError(t, err)
	require.True(t, f.Known)
	require.False(t, f.Following)
}

// TestFollowerOrdering: the state is the one of the latest CreateTime,
// whatever order the pushes and 43004 answers arrive in.
func TestFollowerOrdering(t *testing.T) {
	type step struct {
		follow string // FollowSubscribe, FollowUnsubscribe, or "43004"
		at     int64
	}
	tests := []struct {
		name      string
		steps     []step
		following bool
		since     int64
		source    string
	}{
		{"subscribe", []step{{store.FollowSubscribe, 100}}, true, 100, store.SourceEvent},
		{"unsubscribe after", []step{{store.FollowSubscribe, 100}, {store.FollowUnsubscribe, 200}}, false, 200, store.SourceEvent},
		{"late older unsubscribe loses", []step{{store.FollowSubscribe, 200}, {store.FollowUnsubscribe, 100}}, true, 200, store.SourceEvent},
		{"resubscribe", []step{{store.FollowUnsubscribe, 100}, {store.FollowSubscribe, 200}}, true, 200, store.SourceEvent},
		{"43004", []step{{"43004", 300}}, false, 300, store.SourceErrcode},
		{"subscribe clears 43004", []step{{"43004", 300}, {store.FollowSubscribe, 400}}, true, 400, store.SourceEvent},
		{"older subscribe does not clear 43004", []step{{"43004", 300}, {store.FollowSubscribe, 250}}, false, 300, store.SourceErrcode},
		{"43004 older than a subscribe loses", []step{{store.FollowSubscribe, 400}, {"43004", 300}}, true, 400, store.SourceEvent},
		// Ties (CreateTime has one-second resolution) go to following: a
		// send withheld from a follower is lost, one to a non-follower costs
		// one 43004.
		{"resubscribe in the same second", []step{{store.FollowUnsubscribe, 100}, {store.FollowSubscribe, 100}}, true, 100, store.SourceEvent},
		{"43004 in the second of a subscribe loses", []step{{store.FollowUnsubscribe, 350}, {store.FollowSubscribe, 400}, {"43004", 400}}, true, 400, store.SourceEvent},
		{"subscribe in the second of a 43004 wins", []step{{"43004", 300}, {store.FollowSubscribe, 300}}, true, 300, store.SourceEvent},
		{"since is when the state began", []step{{store.FollowSubscribe, 100}, {store.FollowSubscribe, 150}}, true, 100, store.SourceEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			for i, st := range tt.steps {
				if st.follow == "43004" {
					require.NoError(t, s.MarkNotFollowing(t.Context(), "default", inboundUser, time.Unix(st.at, 0)))
					continue
				}
				recordPush(t, s, push(fmt.Sprint(i), st.at, st.follow, false))
			}
			f, err := s.ReadFollower(t.Context(), "default", inboundUser)
			require.NoError(t, err)
			require.True(t, f.Known)
			require.Equal(t, tt.following, f.Following, "steps %v", tt.steps)
			require.Equal(t, tt.since, f.Since.Unix(), "steps %v", tt.steps)
			require.Equal(t, tt.source, f.Source)
			notFollowing, err := s.NotFollowing(t.Context(), "default", inboundUser)
			require.NoError(t, err)
			require.Equal(t, !tt.following, notFollowing)
		})
	}
	t.Run("unknown user", func(t *testing.T) {
		s, _ := newStore(t)
		f, err := s.ReadFollower(t.Context(), "default", "oNobody")
		require.NoError(t, err)
		require.False(t, f.Known)
		notFollowing, err := s.NotFollowing(t.Context(), "default", "oNobody")
		require.NoError(t, err)
		require.False(t, notFollowing, "unknown is not 'not following'")
	})
	t.Run("last event by CreateTime", func(t *testing.T) {
		s, _ := newStore(t)
		p := push("x", 200, "", false)
		p.Type = "CLICK"
		recordPush(t, s, p)
		p = push("y", 150, "", false)
		p.Type = "VIEW"
		recordPush(t, s, p)
		f, err := s.ReadFollower(t.Context(), "default", inboundUser)
		require.NoError(t, err)
		require.False(t, f.Known, "clicks say nothing about following")
		require.Equal(t, "CLICK", f.LastEvent)
		require.EqualValues(t, 200, f.LastEventAt.Unix())
	})
}

// TestRetryInbound: a failed head keeps its place; its queue comes back
// when due; after the last attempt the head is dropped and the rest goes
// on.
func TestRetryInbound(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	recordPush(t, s, push("a", 100, "", true))
	recordPush(t, s, push("b", 101, "", true))
	toks, err := s.ReadInbound(ctx, "f1", 10, -1)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	head := store.DeliveryID("default", "a")
	r, err := s.RetryInbound(ctx, toks[0], head, now, time.Second, time.Minute, 3, 1)
	require.NoError(t, err)
	require.Equal(t, 1, r.Attempts)
	require.Equal(t, now.Add(time.Second), r.Due)

	moved, err := s.MoveDueInbound(ctx, now.Add(999*time.Millisecond), 10)
	require.NoError(t, err)
	require.Zero(t, moved, "not due yet")
	moved, err = s.MoveDueInbound(ctx, now.Add(time.Second), 10)
	require.NoError(t, err)
	require.Equal(t, 1, moved)
	toks, err = s.ReadInbound(ctx, "f2", 10, -1)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	p, _, err := s.NextInbound(ctx, toks[0].Queue)
	require.NoError(t, err)
	require.Equal(t, head, p.ID, "the failed push is still first")
	require.Equal(t, 1, p.Attempts)

	_, err = s.RetryInbound(ctx, toks[0], store.DeliveryID("default", "b"), now, time.Second, time.Minute, 3, 1)
	require.ErrorIs(t, err, store.ErrMoved, "only the head can be retried")
	_, err = s.FinishInbound(ctx, toks[0], store.DeliveryID("default", "b"))
	require.ErrorIs(t, err, store.ErrMoved, "only the head can be finished")

	r, err = s.RetryInbound(ctx, toks[0], head, now, time.Second, time.Minute, 2, 0)
	require.NoError(t, err)
	require.True(t, r.GaveUp)
	require.Equal(t, 1, r.Left)
	p, _, err = s.NextInbound(ctx, toks[0].Queue)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryID("default", "b"), p.ID)
}

// TestReclaimInbound: a forwarder that died holding a token leaves it
// pending; another takes it over and finds the same head.
func TestReclaimInbound(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	recordPush(t, s, push("a", 100, "", true))
	toks, err := s.ReadInbound(ctx, "dead", 10, -1)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	got, err := s.ReclaimInbound(ctx, "alive", 0, 10)
	require.NoError(t, err)
	require.Len(t, got, 1)
	p, _, err := s.NextInbound(ctx, got[0].Queue)
	require.NoError(t, err)
	require.Equal(t, store.DeliveryID("default", "a"), p.ID)
}

// TestNotFollowingCoalesced: concurrent follower checks share script
// calls, and each caller gets its own user's answer.
func TestNotFollowingCoalesced(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	for i := range 100 {
		if i%3 == 0 {
			require.NoError(t, s.MarkNotFollowing(ctx, "default", fmt.Sprintf("oCoalesced-%03d", i), time.Unix(1000, 0)))
		}
	}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			no, err := s.NotFollowing(ctx, "default", fmt.Sprintf("oCoalesced-%03d", i))
			if assert.NoError(t, err) {
				assert.Equal(t, i%3 == 0, no, "user %d", i)
			}
		})
	}
	wg.Wait()
}
