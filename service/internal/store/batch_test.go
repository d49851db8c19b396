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
