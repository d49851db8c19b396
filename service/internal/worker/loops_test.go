package worker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/store"
)

// fakeQueue is an in-memory Queue for the loops' tests: partitions of
// entries to read, scripted answers for the rest, and a record of calls.
type fakeQueue struct {
	mu        sync.Mutex
	parts     [][]store.Entry
	counts    []int // the count of every ReadPartition call
	readErrs  int   // ReadPartition calls that fail first
	ensured   int
	released  []store.Entry
	moves     []int // MoveDue's answers, in order (then 0)
	moveCalls int
	reclaims  []store.Entry
	feed      store.FeedResult
}

var _ Queue = (*fakeQueue)(nil)

func (q *fakeQueue) Partitions() int { return len(q.parts) }

func (q *fakeQueue) ReadPartition(ctx context.Context, p int, _ string, count int, block time.Duration) ([]store.Entry, error) {
	q.mu.Lock()
	if q.readErrs > 0 {
		q.readErrs--
		q.mu.Unlock()
		return nil, errors.New("read refused")
	}
	q.counts = append(q.counts, count)
	n := min(count, len(q.parts[p]))
	out := q.parts[p][:n]
	q.parts[p] = q.parts[p][n:]
	q.mu.Unlock()
	if len(out) == 0 {
		select { // an empty partition blocks, as XREADGROUP does
		case <-ctx.Done():
		case <-time.After(min(block, 20*time.Millisecond)):
		}
	}
	return out, nil
}

func (q *fakeQueue) Reclaim(context.Context, string, time.Duration, int) ([]store.Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.reclaims
	q.reclaims = nil
	return out, nil
}

func (q *fakeQueue) MoveDue(context.Context, time.Time, int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moveCalls++
	if len(q.moves) == 0 {
		return 0, nil
	}
	n := q.moves[0]
	q.moves = q.moves[1:]
	return n, nil
}

func (q *fakeQueue) Release(_ context.Context, e store.Entry) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released = append(q.released, e)
	return nil
}

func (q *fakeQueue) EnsureGroup(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ensured++
	return nil
}

func (q *fakeQueue) Feed(context.Context, string, store.Rate, time.Duration, int, string) (store.FeedResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.feed, nil
}

// The processor's calls: the loops' tests never reach them.
func (q *fakeQueue) Load(context.Context, string) (*store.Record, error) {
	return nil, store.ErrNotFound
}
func (q *fakeQueue) MarkSending(context.Context, string, time.Time, store.Guard) (int, time.Time, error) {
	return 0, time.Time{}, nil
}
func (q *fakeQueue) Begin(context.Context, string, time.Time, store.Guard) (*store.Record, int, error) {
	return nil, 0, store.ErrNotFound
}
func (q *fakeQueue) Settle(context.Context, store.Entry, store.Settlement, time.Time) (store.Settled, error) {
	return store.Settled{}, nil
}
func (q *fakeQueue) Admit(context.Context, store.Entry, string, store.Rate, time.Duration, time.Duration) (store.Admission, error) {
	return store.Admission{Kind: store.AdmitGo}, nil
}
func (q *fakeQueue) PauseApp(context.Context, string, store.Pause, time.Time) (bool, error) {
	return true, nil
}
func (q *fakeQueue) ResumeApp(context.Context, string) (string, error)                 { return "", nil }
func (q *fakeQueue) NotFollowing(context.Context, string, string) (bool, error)        { return false, nil }
func (q *fakeQueue) MarkNotFollowing(context.Context, string, string, time.Time) error { return nil }

func entriesOf(prefix string, n int) []store.Entry {
	out := make([]store.Entry, n)
	for i := range out {
		out[i] = store.Entry{StreamID: prefix + "-" + string(rune('a'+i)), MessageID: prefix + string(rune('a'+i))}
	}
	return out
}

func loopWorker(t *testing.T, q *fakeQueue, concurrency int) *Worker {
	t.Helper()
	w, err := New(q, nil, nil, Options{Consumer: "loops", Concurrency: concurrency,
		Apps: []*apps.App{{Name: "default"}}})
	require.NoError(t, err)
	return w
}

// TestReaderReadsEveryPartition: one loop per partition, each reading its
// share of the processors, and every entry of every partition reaches
// them.
func TestReaderReadsEveryPartition(t *testing.T) {
	q := &fakeQueue{parts: [][]store.Entry{entriesOf("p0", 5), entriesOf("p1", 7), entriesOf("p2", 1)}}
	w := loopWorker(t, q, 6)
	ctx, cancel := context.WithCancel(t.Context())
	jobs := make(chan store.Entry)
	var readers sync.WaitGroup
	for p := range q.Partitions() {
		readers.Go(func() { w.readLoop(ctx, p, jobs) })
	}
	got := map[string]bool{}
	for len(got) < 13 {
		select {
		case e := <-jobs:
			got[e.MessageID] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 13 entries", len(got))
		}
	}
	cancel()
	readers.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range q.counts {
		require.Equal(t, 2, c, "each of 3 loops reads 6/3 entries at a time")
	}
	assert.Empty(t, q.released)
}

// TestReaderHandsBackWhatNoProcessorTook: on shutdown the entries read
// but not started go back to the queue, in order.
func TestReaderHandsBackWhatNoProcessorTook(t *testing.T) {
	q := &fakeQueue{parts: [][]store.Entry{entriesOf("p0", 4)}}
	w := loopWorker(t, q, 4)
	ctx, cancel := context.WithCancel(t.Context())
	jobs := make(chan store.Entry)
	done := make(chan struct{})
	go func() { w.readLoop(ctx, 0, jobs); close(done) }()
	first := <-jobs
	cancel()
	<-done
	assert.Equal(t, "p0a", first.MessageID)
	assert.Equal(t, entriesOf("p0", 4)[1:], q.released, "the three the processors never took")
}

// TestReaderBacksOffAndRecreatesTheGroup: a failed read is counted, and
// the stream and group are recreated (Redis may have come back empty).
func TestReaderBacksOffAndRecreatesTheGroup(t *testing.T) {
	q := &fakeQueue{parts: [][]store.Entry{entriesOf("p0", 1)}, readErrs: 1}
	w := loopWorker(t, q, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	jobs := make(chan store.Entry)
	go w.readLoop(ctx, 0, jobs)
	select {
	case e := <-jobs:
		assert.Equal(t, "p0a", e.MessageID)
	case <-time.After(5 * time.Second):
		t.Fatal("the entry did not come after the failed read")
	}
	assert.Equal(t, 1.0, value(w.o.Metrics.RedisErrors.WithLabelValues("read")))
	q.mu.Lock()
	defer q.mu.Unlock()
	assert.Equal(t, 1, q.ensured)
}

// TestDueForwarderMovesUntilABatchIsShort: a full batch (500) means more
// may be due now.
func TestDueForwarderMovesUntilABatchIsShort(t *testing.T) {
	q := &fakeQueue{parts: [][]store.Entry{nil}, moves: []int{500, 500, 20, 500}}
	loopWorker(t, q, 1).moveDue(t.Context())
	assert.Equal(t, 3, q.moveCalls)
}

// TestRecovererHandsReclaimedEntriesToProcessors: entries a stopped
// worker left are processed here, and counted.
func TestRecovererHandsReclaimedEntriesToProcessors(t *testing.T) {
	q := &fakeQueue{parts: [][]store.Entry{nil}, reclaims: entriesOf("dead", 2)}
	w := loopWorker(t, q, 1)
	jobs := make(chan store.Entry, 2)
	w.reclaim(t.Context(), jobs)
	require.Len(t, jobs, 2)
	assert.Equal(t, "deada", (<-jobs).MessageID)
	assert.Equal(t, 2.0, value(w.o.Metrics.Reclaimed))
}

// TestFeederFollowsTheSharedPause: the feeder's view of an app's pause is
// what the store answers, and the gauges follow it.
func TestFeederFollowsTheSharedPause(t *testing.T) {
	q := &fakeQueue{parts: [][]store.Entry{nil}, feed: store.FeedResult{Paused: true, Reason: "daily_quota", Waiting: 7, QuotaUsed: 100}}
	w := loopWorker(t, q, 1)
	w.feed(t.Context())
	rt := w.app("default")
	assert.True(t, rt.paused())
	assert.Equal(t, 1.0, value(w.o.Metrics.AppPaused.WithLabelValues("default", "daily_quota")))
	assert.Equal(t, 7.0, value(w.o.Metrics.AppWaiting.WithLabelValues("default")))
	assert.Equal(t, 100.0, value(w.o.Metrics.QuotaUsed.WithLabelValues("default")))
	q.feed = store.FeedResult{}
	w.feed(t.Context())
	assert.False(t, rt.paused(), "active again once no partition is paused")
	assert.Equal(t, 0.0, value(w.o.Metrics.AppPaused.WithLabelValues("default", "daily_quota")))
}

// value reads a counter's or gauge's value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
