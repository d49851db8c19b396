package wxpushd

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
)

// epochWatch raises the store-reset alarm: it checks the store epoch
// (store.CheckEpoch) at start, on every new Redis connection (kick) and
// every interval, so a Redis that came back empty — after a restart
// without persistence, or without ever dropping the connection (FLUSHALL,
// a failover to an empty replica) — is noticed. Each instance remembers
// the epoch it knows and reports each reset it sees once: one ERROR line
// and one increment of wxpush_store_resets_total, whether it found the
// epoch gone (and wrote the new one) or another instance had rewritten it
// first. So every instance raises the alarm, once per event. /readyz
// lists the reset as a warning for warnFor (the idempotency TTL: the time
// during which repeats of lost idempotency keys are taken as new messages).
type epochWatch struct {
	store   *store.Store
	log     *slog.Logger
	metrics *metrics.Metrics
	every   time.Duration
	warnFor time.Duration
	now     func() time.Time
	kick    <-chan struct{} // a new connection to Redis: check now (Server.reconnected)
	clock   *redisClock     // measured again at every check

	known string // the epoch this instance knows; only run touches it

	mu      sync.Mutex
	resetAt time.Time        // the last reset this instance noticed
	how     store.EpochEvent // what it saw then
	resets  int
}

// epochRetry is how soon a failed check is tried again: Redis answering
// again is a reconnect, to be checked without waiting a whole interval.
const epochRetry = time.Second

func newEpochWatch(st *store.Store, log *slog.Logger, m *metrics.Metrics, every, warnFor time.Duration, kick <-chan struct{}, clock *redisClock) *epochWatch {
	return &epochWatch{store: st, log: log, metrics: m, every: every, warnFor: warnFor, now: time.Now, kick: kick, clock: clock}
}

// run checks at once, then on every kick and every interval, until ctx is
// done.
func (w *epochWatch) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
		next := w.every
		if err := w.check(ctx); err != nil {
			next = min(w.every, epochRetry)
		}
		t.Reset(next)
	}
}

// check compares the store epoch with the one this instance knows and
// reports what it finds.
func (w *epochWatch) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := w.now()
	ep, err := w.store.CheckEpoch(ctx, w.known, now)
	if err != nil {
		if ctx.Err() == nil {
			w.metrics.RedisErrors.WithLabelValues("epoch").Inc()
		}
		w.log.Debug("store epoch check failed; retrying", "err", err)
		return err
	}
	if w.clock != nil {
		if err := w.clock.sync(ctx); err != nil {
			w.log.Debug("clock offset from Redis not measured", "err", err)
		}
	}
	was := w.known
	w.known = ep.Value
	switch ep.Event {
	case store.EpochCreated:
		w.log.Info("store epoch created: first start on this Redis, or an upgrade; had the store lost its data while no instance ran, nothing could tell", "epoch", ep.Value)
	case store.EpochSame:
		if was == "" {
			w.log.Info("store epoch", "epoch", ep.Value)
		}
	case store.EpochVanished, store.EpochChanged:
		w.mu.Lock()
		w.resetAt, w.how = now, ep.Event
		w.resets++
		w.mu.Unlock()
		w.metrics.StoreResets.Inc()
		w.log.Error("STORE RESET: Redis came back without its data. Messages queued before, their records and idempotency keys are lost; repeats of those keys are accepted as new messages. Check Redis persistence (appendonly yes).",
			"how", resetHow(ep.Event), "epoch_was", was, "epoch", ep.Value)
	}
	return nil
}

// resetHow says how this instance learned of a reset.
func resetHow(e store.EpochEvent) string {
	if e == store.EpochVanished {
		return "the store epoch vanished (rewritten by this instance)"
	}
	return "the store epoch was rewritten by another instance"
}

// warnings is the store-reset warning /readyz shows for warnFor after the
// last reset this instance noticed.
func (w *epochWatch) warnings() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.resets == 0 || w.now().Sub(w.resetAt) >= w.warnFor {
		return nil
	}
	return []string{fmt.Sprintf("store_reset: Redis lost its data (%s) at %s; messages, records and idempotency keys from before are gone, and repeats of old idempotency keys are accepted as new messages (%d reset(s) seen by this instance; see wxpush_store_resets_total)",
		resetHow(w.how), w.resetAt.UTC().Format(time.RFC3339), w.resets)}
}
