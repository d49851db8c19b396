package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wxpush/wxpush/service/internal/store"
)

// The settler: an attempt's outcome is recorded (and its entry
// acknowledged) in the store, then counted and logged.

// settle records st and reports whether it was recorded.
func (w *Worker) settle(ctx context.Context, log *slog.Logger, e store.Entry, st store.Settlement) (store.Settled, bool) {
	// Settle even if shutdown cancelled the send context: the outcome is
	// known and recording it is what prevents a needless resend.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	res, err := w.q.Settle(sctx, e, st, w.o.Now())
	switch {
	case errors.Is(err, store.ErrStale):
		// This worker was too slow: the message was reclaimed and
		// attempted again (same client_msg_id); that attempt's outcome
		// stands.
		log.Info("outcome not recorded: another worker took the message over", "kind", st.Kind, "attempt", st.Attempt)
		return res, false
	case err != nil:
		w.o.Metrics.RedisErrors.WithLabelValues("settle").Inc()
		log.Warn("cannot record the outcome; the message will be reclaimed and resent with the same client_msg_id", "err", err)
		return res, false
	}
	return res, true
}

// observe counts a recorded settlement: a send, a failure, and a failure
// that a delivery report parked before the send turned it into.
func (w *Worker) observe(rec *store.Record, st store.Settlement, res store.Settled) {
	switch st.Kind {
	case store.SettleSent:
		w.o.Metrics.Sent.WithLabelValues(rec.App).Inc()
		w.o.Metrics.EndToEndSeconds.WithLabelValues(rec.App).Observe(w.o.Now().Sub(rec.CreatedAt).Seconds())
		if res.Early == store.DeliveryFailed {
			w.o.Metrics.Failed.WithLabelValues(rec.App, res.EarlyReason).Inc()
		}
	case store.SettleFail:
		w.o.Metrics.Failed.WithLabelValues(rec.App, st.Reason).Inc()
	}
}

// logOutcome writes the one log line of a recorded attempt's outcome:
// sent, retried, waiting for a pause, or failed (WARN). The logger carries
// the message's id, app and request id.
func logOutcome(log *slog.Logger, st store.Settlement, res store.Settled) {
	attrs := []any{"attempt", st.Attempt}
	if st.Called {
		attrs = append(attrs, "latency_ms", float64(st.Latency.Microseconds())/1000)
	}
	if st.HasErr && st.Kind != store.SettleSent {
		attrs = append(attrs, "errcode", st.ErrCode, "err", st.ErrMsg)
	}
	switch st.Kind {
	case store.SettleSent:
		attrs = append(attrs, "msgid", st.MsgID)
		switch res.Early {
		case store.DeliveryDelivered:
			log.Info("message sent and delivered (its delivery report came first)", attrs...)
		case store.DeliveryFailed:
			log.Warn("message sent, and failed by its delivery report (which came first)", append(attrs, "reason", res.EarlyReason)...)
		default:
			log.Info("message sent", attrs...)
		}
	case store.SettleRetry:
		log.Info("attempt did not send the message; it is retried", append(attrs, "due", st.Due)...)
	case store.SettlePark:
		log.Info("message waits for its app's pause", append(attrs, "pause", st.PauseReason)...)
	case store.SettleFail:
		log.Warn("message failed", append(attrs, "reason", st.Reason)...)
	}
}
