package worker

import (
	"context"
)

// The forwarder of due retries: every instance moves the retries whose
// time has come back to the queue.

func (w *Worker) moveDue(ctx context.Context) {
	for {
		n, err := w.q.MoveDue(ctx, w.o.Now(), 500)
		if err != nil {
			if ctx.Err() == nil {
				w.o.Metrics.RedisErrors.WithLabelValues("move_due").Inc()
			}
			return
		}
		if n < 500 {
			return
		}
	}
}
