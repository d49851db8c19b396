package wxpushd

import (
	"context"
	"log/slog"
	"time"

	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/httpapi"
	"github.com/wxpush/wxpush/service/internal/store"
)

// operator serves the operator's routes: the store's search and redrive,
// and the overview, which adds the apps' states.
type operator struct {
	*store.Store
	admin *appAdmin
	names []string
	now   func() time.Time
}

var _ httpapi.Operator = (*operator)(nil)

// Overview returns the per-minute counters of the last 24 hours, the
// queue's state and every configured app's state.
func (o *operator) Overview(ctx context.Context) (*service.Overview, error) {
	now := o.now()
	minutes, err := o.Counts(ctx, now.Add(-24*time.Hour+time.Minute), now)
	if err != nil {
		return nil, err
	}
	st, err := o.Stats(ctx, now)
	if err != nil {
		return nil, err
	}
	out := &service.Overview{Minutes: minutes, Apps: make([]service.AppStatus, 0, len(o.names)), Queue: service.QueueState{
		Backlog: st.Backlog, Pending: st.Pending, Delayed: st.Delayed, Waiting: st.Waiting, OldestAgeSeconds: st.OldestAge.Seconds(),
	}}
	for _, name := range o.names {
		a, err := o.admin.AppStatus(ctx, name)
		if err != nil {
			return nil, err
		}
		out.Apps = append(out.Apps, *a)
	}
	return out, nil
}

// trimEvery is how often an instance trims the shared search indexes.
const trimEvery = 10 * time.Minute

// trimIndexes drops the search indexes' members whose records have long
// expired, every trimEvery, until ctx ends.
func trimIndexes(ctx context.Context, st *store.Store, log *slog.Logger) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := st.TrimIndexes(tctx, time.Now()); err != nil {
				log.Warn("cannot trim the search indexes; the next round tries again", "err", err)
			}
			cancel()
		}
	}
}
