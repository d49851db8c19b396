package store_test

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// enqueueRead queues n messages of app "default" and reads their entries.
func enqueueRead(t *testing.T, s *store.Store, n int) []store.Entry {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	var msgs []store.NewMessage
	for range n {
		m := newMsg(store.NewID(now), "", "")
		msgs = append(msgs, m)
	}
	_, err := s.Enqueue(ctx, msgs)
	require.NoError(t, err)
	entries, err := s.Read(ctx, "c1", n, -1)
	require.NoError(t, err)
	require.Len(t, entries, n)
	return entries
}

// TestAdmitGCRA: with 10/s and burst 1, the first message goes at once,
// the next waits about one interval; beyond maxWait messages queue in the
// app's wait set (and so do later ones: first come, first served), and
// Feed hands them back with their slots, one interval apart.
func TestAdmitGCRA(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	entries := enqueueRead(t, s, 5)
	rate := store.Rate{Interval: 100}
	first, err := s.Admit(ctx, entries[0], "default", rate, 150*time.Millisecond, 50*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, store.AdmitGo, first.Kind)
	assert.Zero(t, first.Wait)
	second, err := s.Admit(ctx, entries[1], "default", rate, 150*time.Millisecond, 50*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, store.AdmitGo, second.Kind)
	assert.InDelta(t, 100, second.Wait.Milliseconds(), 30, "one emission interval later")
	third, err := s.Admit(ctx, entries[2], "default", rate, 150*time.Millisecond, 50*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, store.AdmitQueued, third.Kind, "200 ms away: more than maxWait")
	for _, e := range entries[3:] {
		adm, err := s.Admit(ctx, e, "default", store.Rate{Interval: 100}, time.Hour, 0)
		require.NoError(t, err)
		assert.Equal(t, store.AdmitQueued, adm.Kind, "others wait already: queue behind them")
	}
	st, err := s.ReadAppState(ctx, "default", "20260101", time.Now())
	require.NoError(t, err)
	assert.Equal(t, int64(3), st.Waiting)

	// Feeding with a 1 s horizon hands back all three, slots 100 ms apart.
	res, err := s.Feed(ctx, "default", rate, time.Second, 100, "20260101")
	require.NoError(t, err)
	assert.Equal(t, 3, res.Moved)
	assert.Zero(t, res.Waiting)
	fed, err := s.Read(ctx, "c1", 10, -1)
	require.NoError(t, err)
	require.Len(t, fed, 3)
	want := slices.Clone(entries[2:])
	slices.SortFunc(want, func(a, b store.Entry) int { return cmp.Compare(a.DueScore, b.DueScore) })
	for i, e := range fed {
		assert.Equal(t, want[i].MessageID, e.MessageID, "in order of due time")
		require.NotZero(t, e.Slot)
		if i > 0 {
			assert.InDelta(t, 100, e.Slot-fed[i-1].Slot, 0.01)
		}
		adm, err := s.Admit(ctx, e, "default", rate, 150*time.Millisecond, 50*time.Millisecond)
		require.NoError(t, err)
		assert.Equal(t, store.AdmitGo, adm.Kind, "a fed message uses its slot")
	}
}

// TestPauseAndResume: a paused app's messages wait in the wait set; a
// lesser pause does not replace a stronger one; a probe gets through;
// resuming lets Feed move them back.
func TestPauseAndResume(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	now := time.Now()
	entries := enqueueRead(t, s, 3)
	started, err := s.PauseApp(ctx, "default", store.Pause{Reason: service.PauseAppError, Rank: 3, ErrCode: 40164, ErrMsg: "invalid ip"}, now)
	require.NoError(t, err)
	assert.True(t, started)
	started, err = s.PauseApp(ctx, "default", store.Pause{Reason: service.PauseMinuteLimit, Rank: 1, Until: now.Add(time.Minute)}, now)
	require.NoError(t, err)
	assert.False(t, started, "a minute-limit pause does not replace an app error")
	for _, e := range entries {
		adm, err := s.Admit(ctx, e, "default", store.Rate{}, time.Second, 0)
		require.NoError(t, err)
		assert.Equal(t, store.AdmitPaused, adm.Kind)
		m, err := s.Get(ctx, e.MessageID)
		require.NoError(t, err)
		require.Len(t, m.History, 2, "accepted, then held behind the pause")
		assert.Equal(t, service.HistoryPaused, m.History[1].Type)
		assert.Equal(t, service.PauseAppError, m.History[1].Reason)
	}
	st, err := s.ReadAppState(ctx, "default", "20260101", now)
	require.NoError(t, err)
	assert.True(t, st.Pause.Paused)
	assert.Equal(t, service.PauseAppError, st.Pause.Reason)
	assert.Equal(t, 40164, st.Pause.ErrCode)
	assert.True(t, st.Pause.Until.IsZero())
	assert.Equal(t, int64(3), st.Waiting)
	res, err := s.Feed(ctx, "default", store.Rate{}, time.Second, 100, "20260101")
	require.NoError(t, err)
	assert.Zero(t, res.Moved, "nothing moves while paused (no probe configured)")
	assert.Equal(t, service.PauseAppError, res.Reason)

	reason, err := s.ResumeApp(ctx, "default")
	require.NoError(t, err)
	assert.Equal(t, service.PauseAppError, reason)
	reason, err = s.ResumeApp(ctx, "default")
	require.NoError(t, err)
	assert.Empty(t, reason, "resuming an active app changes nothing")
	res, err = s.Feed(ctx, "default", store.Rate{}, time.Second, 100, "20260101")
	require.NoError(t, err)
	assert.Equal(t, 3, res.Moved)
	assert.False(t, res.Paused)

	// An expired pause no longer pauses, even where keys never expire (miniredis).
	_, err = s.PauseApp(ctx, "default", store.Pause{Reason: service.PauseMinuteLimit, Rank: 1, Until: now.Add(-time.Second)}, now)
	require.NoError(t, err)
	res, err = s.Feed(ctx, "default", store.Rate{}, time.Second, 100, "20260101")
	require.NoError(t, err)
	assert.False(t, res.Paused)
}

// TestProbe: a quota pause with a probe interval lets one waiting message
// through per interval, marked as the probe.
func TestProbe(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	now := time.Now()
	entries := enqueueRead(t, s, 2)
	_, err := s.PauseApp(ctx, "default", store.Pause{Reason: service.PauseDailyQuota, Rank: 2, Until: now.Add(time.Hour), ProbeEvery: time.Millisecond}, now)
	require.NoError(t, err)
	for _, e := range entries {
		adm, err := s.Admit(ctx, e, "default", store.Rate{}, time.Second, 0)
		require.NoError(t, err)
		require.Equal(t, store.AdmitPaused, adm.Kind)
	}
	time.Sleep(5 * time.Millisecond)
	res, err := s.Feed(ctx, "default", store.Rate{}, time.Second, 100, "20260101")
	require.NoError(t, err)
	assert.Equal(t, 1, res.Moved, "one probe")
	assert.True(t, res.Paused)
	probe, err := s.Read(ctx, "c1", 10, -1)
	require.NoError(t, err)
	require.Len(t, probe, 1)
	assert.True(t, probe[0].Probe)
	assert.Equal(t, entries[0].MessageID, probe[0].MessageID, "the first in order of due time")
	adm, err := s.Admit(ctx, probe[0], "default", store.Rate{}, time.Second, 0)
	require.NoError(t, err)
	assert.Equal(t, store.AdmitProbe, adm.Kind)
}

// TestOutbox: final statuses enter the outbox once; claims lease them;
// retries back off and give up after the last attempt.
func TestOutbox(t *testing.T) {
	r := redistest.New(t)
	s := store.New(r.Client, store.Options{Prefix: r.Prefix, Events: map[string]store.EventPolicy{"default": store.EventsFinalOrSent}})
	ctx := t.Context()
	now := time.Now()
	entries := enqueueRead(t, s, 2)
	require.NoError(t, settleErr(s.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleSent, App: "default", MsgID: 7}, now)))
	require.NoError(t, settleErr(s.Settle(ctx, entries[1], store.Settlement{Kind: store.SettleRetry, App: "default", Due: now}, now)))
	ids, err := s.ClaimEvents(ctx, now.Add(time.Second), time.Minute, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{entries[0].MessageID}, ids, "sent is final for an app without delivery reports; a retry is not")
	again, err := s.ClaimEvents(ctx, now.Add(time.Second), time.Minute, 10)
	require.NoError(t, err)
	assert.Empty(t, again, "leased")
	n, gaveUp, err := s.RetryEvent(ctx, ids[0], now, 10*time.Millisecond, time.Second, 2, 0.5)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.False(t, gaveUp)
	ids, err = s.ClaimEvents(ctx, now.Add(time.Second), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	n, gaveUp, err = s.RetryEvent(ctx, ids[0], now, 10*time.Millisecond, time.Second, 2, 0.5)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.True(t, gaveUp)
	pending, err := s.PendingEvents(ctx)
	require.NoError(t, err)
	assert.Zero(t, pending)
}
