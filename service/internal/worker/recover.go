package worker

import (
	"context"

	"github.com/wxpush/wxpush/service/internal/store"
)

// The recoverer: entries a stopped worker received and never settled
// are taken over after the visibility timeout.

func (w *Worker) reclaim(ctx context.Context, jobs chan<- store.Entry) {
	entries, err := w.q.Reclaim(ctx, w.o.Consumer, w.o.Visibility, w.o.Concurrency)
	if err != nil {
		if ctx.Err() == nil {
			w.o.Metrics.RedisErrors.WithLabelValues("reclaim").Inc()
		}
		return
	}
	for i, e := range entries {
		w.o.Metrics.Reclaimed.Inc()
		w.o.Logger.Info("reclaimed a message from a stopped worker", "id", e.MessageID, "request_id", e.RequestID)
		select {
		case jobs <- e:
		case <-ctx.Done():
			w.release(entries[i:])
			return
		}
	}
}
