package store_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// scriptGate is a go-redis hook that, once armed, holds the first script
// call (EVALSHA or EVAL) until it is released, so that a test can let other calls queue
// up in a coalescer behind it and so decide what the next batch holds.
type scriptGate struct {
	armed   atomic.Bool // set once the test's setup is done
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newScriptGate() *scriptGate {
	return &scriptGate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *scriptGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *scriptGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (g *scriptGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); g.armed.Load() && (name == "evalsha" || name == "eval") {
			first := false
			g.once.Do(func() { first = true })
			if first {
				close(g.entered)
				<-g.release
			}
		}
		return next(ctx, cmd)
	}
}

// gatedStore is a Store whose first script call waits for gate.release.
func gatedStore(t *testing.T) (*store.Store, *redistest.Redis, *scriptGate) {
	r := redistest.New(t)
	gate := newScriptGate()
	r.Client.AddHook(gate)
	t.Cleanup(func() {
		select {
		case <-gate.release:
		default:
			close(gate.release)
		}
	})
	return store.New(r.Client, store.Options{Prefix: r.Prefix, IdempotencyTTL: time.Hour}), r, gate
}

// waitPending waits until the Begin (or Settle) coalescer holds n calls.
func waitPending(t *testing.T, s *store.Store, begin bool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, st := store.PendingCalls(s)
		got := st
		if begin {
			got = b
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coalescer holds %d calls, want %d", got, n)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestReviewBeginBatchWithOneBrokenRecord: a record that makes the begin
// script fail (here an ambiguous_at that is not a number, as something
// other than wxpushd could write) must fail only its own Begin, as it did
// before Begin calls were coalesced. Today the Lua error aborts the whole
// script call: the messages begun before it in the same call have their
// attempt counted and their status set to sending (Redis does not roll a
// script back), yet their callers are told ErrUnavailable, so they leave
// the message to be reclaimed, and the reclaiming worker's guard takes
// that never-sent attempt for one whose outcome is unknown; the messages
// after it are not begun at all. A message whose record stays broken is
// reclaimed again and again and fails a batch of its neighbours each time.
func TestReviewBeginBatchWithOneBrokenRecord(t *testing.T) {
	s, r, gate := gatedStore(t)
	ctx := t.Context()
	entries := enqueueRead(t, s, 4)
	id := func(i int) string { return entries[i].MessageID }
	require.NoError(t, r.Client.HSet(ctx, r.Prefix+"msg:"+id(2), "ambiguous_at", "garbage").Err())
	g := store.Guard{Window: 10 * time.Minute} // the worker always sets one

	type result struct {
		attempt int
		err     error
	}
	results := make([]result, 4)
	var wg sync.WaitGroup
	begin := func(i int) {
		wg.Go(func() {
			_, attempt, err := s.Begin(ctx, id(i), now, g)
			results[i] = result{attempt, err}
		})
	}
	// Message 0 leads a batch of its own, held in Redis's doorway while
	// 1, 2 (broken) and 3 queue up behind it, in that order.
	gate.armed.Store(true)
	begin(0)
	<-gate.entered
	for i := 1; i <= 3; i++ {
		begin(i)
		waitPending(t, s, true, i)
	}
	close(gate.release)
	wg.Wait()

	require.NoError(t, results[0].err)
	assert.Error(t, results[2].err, "the broken record's own Begin fails")
	for _, i := range []int{1, 3} {
		rec, err := s.Get(ctx, id(i))
		require.NoError(t, err)
		if results[i].err != nil {
			assert.Equal(t, 0, rec.Attempts, "message %d: a Begin that fails must count no attempt (it was told %v)", i, results[i].err)
			assert.Equal(t, "queued", string(rec.Status), "message %d: a Begin that fails must change nothing", i)
		}
		assert.NoError(t, results[i].err, "message %d: a neighbour's broken record must not fail this Begin", i)
		assert.Equal(t, 1, results[i].attempt, "message %d", i)
	}
}

// TestReviewSettleBatchWithOneBrokenRecord: the same for Settle. A
// settlement that makes the settle script fail (an ambiguous attempt on a
// record whose ambiguous_at is not a number) aborts the shared script
// call: the settlement before it in the call is written (status sent,
// entry acknowledged) while its caller is told ErrUnavailable and logs
// that the message will be resent; the one after it is not written.
func TestReviewSettleBatchWithOneBrokenRecord(t *testing.T) {
	s, r, gate := gatedStore(t)
	ctx := t.Context()
	entries := enqueueRead(t, s, 4)
	for _, e := range entries {
		attempt, _, err := s.MarkSending(ctx, e.MessageID, now, store.Guard{})
		require.NoError(t, err)
		require.Equal(t, 1, attempt)
	}
	require.NoError(t, r.Client.HSet(ctx, r.Prefix+"msg:"+entries[2].MessageID, "ambiguous_at", "garbage").Err())

	errs := make([]error, 4)
	var wg sync.WaitGroup
	settle := func(i int) {
		st := store.Settlement{Kind: store.SettleSent, App: "default", ToUser: storeUser, MsgID: int64(500 + i), Attempt: 1}
		if i == 2 {
			st = store.Settlement{Kind: store.SettleRetry, App: "default", Due: now.Add(time.Minute), Attempt: 1, AmbiguousAt: now}
		}
		wg.Go(func() { _, errs[i] = s.Settle(ctx, entries[i], st, now) })
	}
	gate.armed.Store(true)
	settle(0)
	<-gate.entered
	for i := 1; i <= 3; i++ {
		settle(i)
		waitPending(t, s, false, i)
	}
	close(gate.release)
	wg.Wait()

	require.NoError(t, errs[0])
	assert.Error(t, errs[2], "the broken record's own Settle fails")
	for _, i := range []int{1, 3} {
		rec, err := s.Get(ctx, entries[i].MessageID)
		require.NoError(t, err)
		if errs[i] != nil {
			assert.Equal(t, "sending", string(rec.Status), "message %d: a Settle that fails must write nothing (it was told %v)", i, errs[i])
		}
		assert.NoError(t, errs[i], "message %d: a neighbour's broken record must not fail this Settle", i)
	}
}

// TestReviewBeginWithDoneContextWritesNothing: a Begin whose caller has
// given up already (its context is done) must not count an attempt.
// Before coalescing, go-redis refused to send a command on a done context;
// now an idle coalescer makes the caller the leader, and the leader writes
// its batch on a context of its own, so the attempt is counted and the
// record left 'sending' although the caller gave up.
func TestReviewBeginWithDoneContextWritesNothing(t *testing.T) {
	s, _ := newStore(t)
	entries := enqueueRead(t, s, 1)
	done, cancel := context.WithCancel(t.Context())
	cancel()
	_, attempt, err := s.Begin(done, entries[0].MessageID, now, store.Guard{Window: 10 * time.Minute})
	rec, gerr := s.Get(t.Context(), entries[0].MessageID)
	require.NoError(t, gerr)
	assert.Error(t, err, "a Begin on a done context fails (it was given attempt %d)", attempt)
	assert.Equal(t, 0, rec.Attempts, "a Begin on a done context counts no attempt")
	assert.Equal(t, "queued", string(rec.Status))
}
