package worker

import (
	"context"
	"time"

	"github.com/wxpush/wxpush/service/internal/store"
)

// The reader: one loop per partition takes new entries from the queue
// and hands them to the processors; on shutdown it hands back those no
// processor took.

// readLoop feeds jobs from partition p until ctx is done. Entries read
// but not taken by a processor when ctx ends are handed back to the queue.
// With several partitions each loop reads its share of the processors (at
// least one): Concurrency entries read ahead in all, or one per partition
// when there are more partitions than processors.
func (w *Worker) readLoop(ctx context.Context, p int, jobs chan<- store.Entry) {
	backoff := 100 * time.Millisecond
	count := max(w.o.Concurrency/w.q.Partitions(), 1)
	for ctx.Err() == nil {
		entries, err := w.q.ReadPartition(ctx, p, w.o.Consumer, count, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.o.Metrics.RedisErrors.WithLabelValues("read").Inc()
			w.o.Logger.Warn("queue read failed; backing off", "err", err, "backoff", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			// Redis may have come back empty: recreate the stream and
			// group (a no-op when they exist) rather than wait to be told.
			_ = w.q.EnsureGroup(ctx)
			continue
		}
		backoff = 100 * time.Millisecond
		for i, e := range entries {
			select {
			case jobs <- e:
			case <-ctx.Done():
				w.release(entries[i:])
				return
			}
		}
	}
}

func (w *Worker) release(entries []store.Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	failed := 0
	var last error
	for _, e := range entries {
		if err := w.q.Release(ctx, e); err != nil {
			failed, last = failed+1, err
		}
	}
	if failed > 0 {
		// Not a line about one message: those are not loaded, so their
		// request ids are not known here.
		w.o.Logger.Warn("shutdown: could not hand back queue entries; they will be reclaimed", "entries", failed, "err", last)
	}
}
