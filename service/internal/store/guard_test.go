package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// window is the resend window of these tests: WeChat's 10 minutes less a
// margin.
const window = 8*time.Minute + 50*time.Second

// ambiguousAttempt enqueues id and records one attempt that began at t0
// and settled as a retry whose outcome is unknown (a lost answer).
func ambiguousAttempt(t *testing.T, s *store.Store, id string, t0 time.Time) {
	t.Helper()
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg(id, "", "h")})
	require.NoError(t, err)
	entries, err := s.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	n, amb, err := s.MarkSending(ctx, id, t0, store.Guard{Window: window})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.True(t, amb.IsZero(), "a first attempt has nothing ambiguous before it: %v", amb)
	require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleRetry, App: "default", Due: t0.Add(time.Second),
		HasErr: true, ErrMsg: "wechat template_send: timeout error", Attempt: n, AmbiguousAt: t0}, t0.Add(10*time.Second))))
}

// TestGuardRefusesAResendPastTheWindow: after an attempt whose outcome is
// unknown, Begin and MarkSending count a resend up to the window's last
// millisecond and refuse it from then on, counting nothing and changing
// nothing (the message is not sent again).
func TestGuardRefusesAResendPastTheWindow(t *testing.T) {
	for _, begin := range []bool{true, false} {
		name := map[bool]string{true: "Begin", false: "MarkSending"}[begin]
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := t.Context()
			ambiguousAttempt(t, s, "g", now)
			start := func(at time.Time) (int, time.Time) {
				t.Helper()
				if begin {
					rec, n, err := s.Begin(ctx, "g", at, store.Guard{Window: window})
					require.NoError(t, err)
					return n, rec.AmbiguousAt
				}
				n, amb, err := s.MarkSending(ctx, "g", at, store.Guard{Window: window})
				require.NoError(t, err)
				return n, amb
			}
			before, err := s.Load(ctx, "g")
			require.NoError(t, err)
			assert.True(t, before.AmbiguousAt.Equal(now), "ambiguous_at %v, want the attempt's start %v", before.AmbiguousAt, now)

			n, amb := start(now.Add(window))
			assert.Equal(t, store.AttemptRefused, n, "a resend at t0+window is refused")
			assert.True(t, amb.Equal(now), "the refusal names the attempt it is about: %v", amb)
			after, err := s.Load(ctx, "g")
			require.NoError(t, err)
			assert.Equal(t, before, after, "a refusal counts no attempt and changes nothing")

			n, amb = start(now.Add(window - time.Millisecond))
			assert.Equal(t, 2, n, "a resend at t0+window-1ms is counted")
			assert.True(t, amb.Equal(now), "%v", amb)
		})
	}
}

// TestGuardKeepsTheEarliestAmbiguousTime: a later ambiguous attempt never
// moves the window's start later; an earlier one (another instance's
// clock) moves it earlier; a settlement with a known outcome leaves it.
func TestGuardKeepsTheEarliestAmbiguousTime(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	ambiguousAttempt(t, s, "e", now)
	settle := func(at, amb time.Time) {
		t.Helper()
		n, _, err := s.MarkSending(ctx, "e", at, store.Guard{Window: window})
		require.NoError(t, err)
		require.Positive(t, n)
		require.NoError(t, settleErr(s.Settle(ctx, store.Entry{StreamID: "0-1", MessageID: "e"},
			store.Settlement{Kind: store.SettleRetry, App: "default", Due: at, Attempt: n, AmbiguousAt: amb}, at)))
	}
	ambiguousAt := func() time.Time {
		t.Helper()
		rec, err := s.Load(ctx, "e")
		require.NoError(t, err)
		return rec.AmbiguousAt
	}
	settle(now.Add(time.Minute), now.Add(time.Minute))
	assert.True(t, ambiguousAt().Equal(now), "a later ambiguous attempt keeps t0: %v", ambiguousAt())
	settle(now.Add(2*time.Minute), time.Time{})
	assert.True(t, ambiguousAt().Equal(now), "a known outcome keeps t0: %v", ambiguousAt())
	settle(now.Add(3*time.Minute), now.Add(-time.Second))
	assert.True(t, ambiguousAt().Equal(now.Add(-time.Second)), "an earlier one wins: %v", ambiguousAt())
}

// TestGuardCountsAnUnsettledAttempt: an attempt that began and never
// settled (its worker died or stalled; the record is still sending when
// the next attempt begins, after a reclaim) may have reached WeChat: its
// start opens the window as a lost answer does. The caller's own attempt
// (a resend after a token refresh) is not such an attempt.
func TestGuardCountsAnUnsettledAttempt(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	_, err := s.Enqueue(ctx, []store.NewMessage{newMsg("u", "", "h"), newMsg("own", "", "h")})
	require.NoError(t, err)

	// A worker begins and dies.
	_, n, err := s.Begin(ctx, "u", now, store.Guard{Window: window})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// Its reclaimer, past the window: refused, the attempt's start kept.
	rec, n, err := s.Begin(ctx, "u", now.Add(window), store.Guard{Window: window})
	require.NoError(t, err)
	assert.Equal(t, store.AttemptRefused, n, "the unsettled attempt's start opens the window")
	assert.True(t, rec.AmbiguousAt.Equal(now), "%v", rec.AmbiguousAt)
	stored, err := s.Load(ctx, "u")
	require.NoError(t, err)
	assert.True(t, stored.AmbiguousAt.Equal(now), "and it is stored: %v", stored.AmbiguousAt)
	assert.Equal(t, 1, stored.Attempts, "nothing counted")
	assert.Equal(t, service.StatusSending, stored.Status)

	// Inside the window the reclaimer resends, and the start stays.
	n, amb, err := s.MarkSending(ctx, "u", now.Add(window-time.Millisecond), store.Guard{Window: window})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.True(t, amb.Equal(now), "%v", amb)
	// That resend never settles either: the next one is still measured
	// from the first attempt, not from the second.
	n, _, err = s.MarkSending(ctx, "u", now.Add(window), store.Guard{Window: window})
	require.NoError(t, err)
	assert.Equal(t, store.AttemptRefused, n)

	// A worker's own attempt, resent after a token refresh long after.
	n, _, err = s.MarkSending(ctx, "own", now, store.Guard{Window: window})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, amb, err = s.MarkSending(ctx, "own", now.Add(time.Hour), store.Guard{Window: window, Held: 1})
	require.NoError(t, err)
	assert.Equal(t, 2, n, "the caller's own attempt is not an abandoned one")
	assert.True(t, amb.IsZero(), "%v", amb)
}

// TestGuardIsAtomicWithTheAttemptCount: instances racing to resend one
// message, some with clocks before the end of the window and some after,
// each either counts its own attempt or is refused; the count is the
// number of resends allowed, and no refused one counted anything.
func TestGuardIsAtomicWithTheAttemptCount(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	ambiguousAttempt(t, s, "r", now)
	const racers = 16
	got := make([]int, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			at := now.Add(window - time.Second) // half of them inside the window
			if i%2 == 1 {
				at = now.Add(window + time.Second)
			}
			var err error
			if i%4 < 2 {
				_, got[i], err = s.Begin(ctx, "r", at, store.Guard{Window: window})
			} else {
				got[i], _, err = s.MarkSending(ctx, "r", at, store.Guard{Window: window})
			}
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for i, n := range got {
		if i%2 == 1 {
			assert.Equal(t, store.AttemptRefused, n, "racer %d's clock is past the window", i)
			continue
		}
		assert.False(t, seen[n], "attempt %d counted twice", n)
		seen[n] = true
		assert.True(t, n >= 2 && n <= racers/2+1, "racer %d got attempt %d", i, n)
	}
	rec, err := s.Load(ctx, "r")
	require.NoError(t, err)
	assert.Equal(t, 1+racers/2, rec.Attempts, "the first attempt and the resends inside the window, nothing else")
}
