package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/store"
)

// TestEnqueueCoalescing: many concurrent callers, some of which give up
// early, all get the right answer or a clean error, and every message that
// was answered Created is stored exactly once.
func TestEnqueueCoalescing(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	var created, cancelled atomic.Int64
	for g := range 64 {
		wg.Go(func() {
			for i := range 20 {
				ctx := t.Context()
				var cancel context.CancelFunc
				if (g+i)%7 == 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(i%3)*time.Microsecond)
				}
				batch := []store.NewMessage{newMsg(fmt.Sprintf("g%d-%d-a", g, i), "", "h")}
				if i%4 == 0 {
					batch = append(batch, newMsg(fmt.Sprintf("g%d-%d-b", g, i), "", "h"))
				}
				res, err := s.Enqueue(ctx, batch)
				if cancel != nil {
					cancel()
				}
				if err != nil {
					assert.ErrorIs(t, err, store.ErrUnavailable)
					cancelled.Add(1)
					continue
				}
				require.Len(t, res, len(batch))
				for k, r := range res {
					assert.Equal(t, store.Created, r.Outcome)
					assert.Equal(t, batch[k].ID, r.ID, "results come back in order, to the right caller")
					created.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st, err := s.Stats(t.Context(), now)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Backlog, created.Load(), "every acknowledged message is queued")
	t.Logf("created %d, cancelled calls %d, queued %d", created.Load(), cancelled.Load(), st.Backlog)
}

// TestSettleCoalescing: concurrent Settle calls share script calls, and
// each is settled as if alone: a stale fence is refused (ErrStale, nothing
// written, entry not acknowledged) beside others that are recorded in the
// same call, every result goes to its own caller, and a caller that gives
// up before its batch is written gets a clean error and changes nothing.
func TestSettleCoalescing(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const n = 300
	entries := enqueueRead(t, s, n)
	for _, e := range entries {
		attempt, _, err := s.MarkSending(ctx, e.MessageID, now, store.Guard{})
		require.NoError(t, err)
		require.Equal(t, 1, attempt)
	}
	kindOf := func(i int) store.Settlement {
		switch i % 4 {
		case 0:
			return store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: int64(1000 + i), Attempt: 1}
		case 1:
			return store.Settlement{Kind: store.SettleRetry, App: "default", Due: now.Add(time.Minute), Attempt: 1, HasErr: true, ErrCode: -1, ErrMsg: "busy"}
		case 2:
			return store.Settlement{Kind: store.SettleFail, App: "default", Reason: "permanent_errcode", Attempt: 1, HasErr: true, ErrCode: 40003}
		default:
			// Fenced by an attempt that is not the record's: stale.
			return store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: int64(1000 + i), Attempt: 2}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, e := range entries {
		wg.Go(func() {
			_, errs[i] = s.Settle(ctx, e, kindOf(i), now)
		})
	}
	wg.Wait()
	want := map[int]string{0: "sent", 1: "retrying", 2: "failed", 3: "sending"}
	for i, e := range entries {
		rec, err := s.Load(ctx, e.MessageID)
		require.NoError(t, err)
		assert.Equal(t, want[i%4], string(rec.Status), "message %d", i)
		if i%4 == 3 {
			assert.ErrorIs(t, errs[i], store.ErrStale, "message %d", i)
		} else {
			assert.NoError(t, errs[i], "message %d", i)
		}
		if i%4 == 0 {
			assert.Equal(t, int64(1000+i), rec.MsgID, "message %d got its own msgid", i)
		}
	}
	pending, err := s.Client().XPending(ctx, s.Prefix()+"queue", "workers").Result()
	require.NoError(t, err)
	assert.EqualValues(t, n/4, pending.Count, "only the stale settlements' entries stay unacknowledged")

	// A caller whose context is already done while another batch is being
	// written is withdrawn: ErrUnavailable, nothing written.
	more := enqueueRead(t, s, 2)
	for _, e := range more {
		_, _, err := s.MarkSending(ctx, e.MessageID, now, store.Guard{})
		require.NoError(t, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	var got error
	var wg2 sync.WaitGroup
	for range 50 { // keep the coalescer busy so that the cancelled call waits
		wg2.Go(func() { _, _ = s.Settle(ctx, more[0], store.Settlement{Kind: store.SettleDrop}, now) })
	}
	_, got = s.Settle(done, more[1], store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: 7, Attempt: 1}, now)
	wg2.Wait()
	rec, err := s.Load(ctx, more[1].MessageID)
	require.NoError(t, err)
	if got != nil {
		assert.ErrorIs(t, got, store.ErrUnavailable)
		assert.Equal(t, "sending", string(rec.Status), "a withdrawn settlement writes nothing")
	} else {
		// It led a batch of its own before anyone else: then it is written.
		assert.Equal(t, "sent", string(rec.Status))
	}
}

// TestBeginCoalescing: concurrent Begin calls share script calls, and each
// gets its own record and attempt number; a missing record is
// ErrNotFound beside others that begin in the same call, and a final one
// is AttemptFinal with nothing counted.
func TestBeginCoalescing(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	const n = 200
	entries := enqueueRead(t, s, n)
	sentMessage(t, s, "final-one", 99)
	type result struct {
		rec     *store.Record
		attempt int
		err     error
	}
	results := make([]result, n+2)
	ids := make([]string, 0, n+2)
	for _, e := range entries {
		ids = append(ids, e.MessageID)
	}
	ids = append(ids, "no-such-message", "final-one")
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			rec, attempt, err := s.Begin(ctx, id, now, store.Guard{})
			results[i] = result{rec, attempt, err}
		})
	}
	wg.Wait()
	for i, id := range ids[:n] {
		r := results[i]
		require.NoError(t, r.err, id)
		assert.Equal(t, id, r.rec.ID, "each caller gets its own record")
		assert.Equal(t, 1, r.attempt)
	}
	assert.ErrorIs(t, results[n].err, store.ErrNotFound)
	assert.NoError(t, results[n+1].err)
	assert.Equal(t, store.AttemptFinal, results[n+1].attempt)
	rec, err := s.Load(ctx, "final-one")
	require.NoError(t, err)
	assert.Equal(t, "sent", string(rec.Status), "a final record is left as it is")

	// A second round counts a second attempt for each, once.
	for i, id := range ids[:n] {
		wg.Go(func() {
			_, attempt, err := s.Begin(ctx, id, now, store.Guard{})
			results[i] = result{attempt: attempt, err: err}
		})
	}
	wg.Wait()
	for i := range ids[:n] {
		assert.NoError(t, results[i].err)
		assert.Equal(t, 2, results[i].attempt)
	}
}
