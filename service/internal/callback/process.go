package callback

import (
	"context"
	"errors"
	"time"

	"github.com/wxpush/wxpush/service/internal/store"
)

// readCount is how many reports the processor takes per read.
const readCount = 64

// Run applies recorded delivery reports until ctx is done: it reads new
// ones (waiting up to Options.Block), takes over those another instance
// left unacknowledged for Options.ReclaimAfter, applies each and
// acknowledges it. A report whose application fails (Redis) stays
// unacknowledged and is retried after ReclaimAfter. Run returns nil when
// ctx is done.
func (r *Receiver) Run(ctx context.Context) error {
	if r.o.Consumer == "" {
		return errors.New("callback: Run needs Options.Consumer")
	}
	backoff := 100 * time.Millisecond
	lastReclaim := time.Now()
	for ctx.Err() == nil {
		entries, err := r.o.Store.ReadReports(ctx, r.o.Consumer, readCount, r.o.Block)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.o.Metrics.RedisErrors.WithLabelValues("read_reports").Inc()
			r.o.Logger.Warn("delivery reports: read failed; backing off", "err", err, "backoff", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		r.apply(ctx, entries)
		if time.Since(lastReclaim) >= r.o.ReclaimAfter/2 {
			lastReclaim = time.Now()
			r.reclaim(ctx)
		}
	}
	return nil
}

// ProcessPending applies the reports recorded so far without waiting for
// new ones, and returns how many it took. Reports another consumer holds
// are not touched.
func (r *Receiver) ProcessPending(ctx context.Context) (int, error) {
	consumer := r.o.Consumer
	if consumer == "" {
		consumer = "process-pending"
	}
	n := 0
	for {
		entries, err := r.o.Store.ReadReports(ctx, consumer, readCount, -1)
		if err != nil {
			return n, err
		}
		if len(entries) == 0 {
			return n, nil
		}
		n += len(entries)
		r.apply(ctx, entries)
	}
}

func (r *Receiver) reclaim(ctx context.Context) {
	entries, err := r.o.Store.ReclaimReports(ctx, r.o.Consumer, r.o.ReclaimAfter, readCount)
	if err != nil {
		if ctx.Err() == nil {
			r.o.Metrics.RedisErrors.WithLabelValues("reclaim_reports").Inc()
		}
		return
	}
	if len(entries) > 0 {
		r.o.Logger.Info("delivery reports: took over reports a stopped instance left", "count", len(entries))
	}
	r.apply(ctx, entries)
}

// apply applies entries and acknowledges those applied.
func (r *Receiver) apply(ctx context.Context, entries []store.ReportEntry) {
	if len(entries) == 0 {
		return
	}
	// Reports already read are applied even if shutdown begins meanwhile:
	// each is one short script, and finishing saves a reclaim.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	done := make([]string, 0, len(entries))
	for _, e := range entries {
		rep := e.Report
		res, err := r.o.Store.ApplyDelivery(actx, rep, r.o.EarlyTTL)
		if err != nil {
			r.o.Metrics.RedisErrors.WithLabelValues("apply_delivery").Inc()
			r.o.Logger.Warn("delivery report not applied; it will be retried", "app", rep.App, "msgid", rep.MsgID, "err", err)
			continue
		}
		done = append(done, e.StreamID)
		r.o.Metrics.DeliveryReports.WithLabelValues(rep.App, string(res.Outcome)).Inc()
		attrs := []any{"id", res.MessageID, "app", rep.App, "request_id", res.RequestID, "msgid", rep.MsgID}
		switch res.Outcome {
		case store.DeliveryDelivered:
			r.o.Logger.Info("message delivered", attrs...)
		case store.DeliveryFailed:
			r.o.Metrics.Failed.WithLabelValues(rep.App, rep.Reason).Inc()
			r.o.Logger.Warn("message failed: its delivery report says so", append(attrs, "reason", rep.Reason, "status", rep.Status)...)
		case store.DeliveryForged:
			r.o.Logger.Warn("delivery report refused: it names another user than the message's touser", attrs...)
		case store.DeliveryGone, store.DeliveryNotSent:
			r.o.Logger.Info("delivery report for a message that is not waiting for one", append(attrs, "outcome", res.Outcome)...)
		default:
			r.o.Logger.Debug("delivery report applied", append(attrs, "outcome", res.Outcome, "status", rep.Status)...)
		}
	}
	if err := r.o.Store.AckReports(actx, done...); err != nil {
		// Applying is idempotent: a report acknowledged late is applied
		// again with no effect.
		r.o.Metrics.RedisErrors.WithLabelValues("ack_reports").Inc()
		r.o.Logger.Warn("delivery reports applied but not acknowledged; they will be applied again", "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
