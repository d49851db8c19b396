package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// TestCheckEpoch walks the epoch through a store's life as one instance
// sees it: first start, unchanged, vanished (the store came back empty),
// changed by another instance, and a restarted instance adopting it.
func TestCheckEpoch(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()

	first, err := s.CheckEpoch(ctx, "", now)
	require.NoError(t, err)
	assert.Equal(t, store.EpochCreated, first.Event, "first start on an empty store")
	assert.NotEmpty(t, first.Value)
	assert.False(t, first.Event.Reset(), "a first start is not a reset")

	same, err := s.CheckEpoch(ctx, first.Value, now)
	require.NoError(t, err)
	assert.Equal(t, store.Epoch{Value: first.Value, Event: store.EpochSame}, same)

	adopted, err := s.CheckEpoch(ctx, "", now) // another instance starting
	require.NoError(t, err)
	assert.Equal(t, store.Epoch{Value: first.Value, Event: store.EpochSame}, adopted)

	// The store comes back empty: every key of the prefix is gone.
	keys, err := r.Client.Keys(ctx, r.Prefix+"*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	require.NoError(t, r.Client.Del(ctx, keys...).Err())

	gone, err := s.CheckEpoch(ctx, first.Value, now)
	require.NoError(t, err)
	assert.Equal(t, store.EpochVanished, gone.Event)
	assert.True(t, gone.Event.Reset())
	assert.NotEqual(t, first.Value, gone.Value, "the rewritten epoch differs")
	stored, err := r.Client.Get(ctx, r.Prefix+"epoch").Result()
	require.NoError(t, err)
	assert.Equal(t, gone.Value, stored, "the epoch is written again")

	// An instance that still knows the first epoch sees the new one.
	other, err := s.CheckEpoch(ctx, first.Value, now)
	require.NoError(t, err)
	assert.Equal(t, store.Epoch{Value: gone.Value, Event: store.EpochChanged}, other)
	assert.True(t, other.Event.Reset())

	again, err := s.CheckEpoch(ctx, gone.Value, now)
	require.NoError(t, err)
	assert.Equal(t, store.Epoch{Value: gone.Value, Event: store.EpochSame}, again, "one event, reported once")
}

// TestEpochOutlivesNormalOperation: the epoch lives under the store's
// prefix (its hash tag, for Cluster) and never expires, whatever the
// retention of the records around it.
func TestEpochOutlivesNormalOperation(t *testing.T) {
	r, ctx := redistest.New(t), t.Context()
	s := store.New(r.Client, store.Options{Prefix: r.Prefix, Retention: time.Second, IdempotencyTTL: time.Second})
	ep, err := s.CheckEpoch(ctx, "", now)
	require.NoError(t, err)
	_, err = s.Enqueue(ctx, []store.NewMessage{newMsg("m1", "k1", "h1")})
	require.NoError(t, err)
	require.NoError(t, s.EnsureGroup(ctx))

	keys, err := r.Client.Keys(ctx, r.Prefix+"*").Result()
	require.NoError(t, err)
	assert.Contains(t, keys, r.Prefix+"epoch")
	ttl, err := r.Client.TTL(ctx, r.Prefix+"epoch").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl, "the epoch has no expiry")
	if r.Mini != nil {
		r.Mini.FastForward(48 * time.Hour) // records and idempotency keys expire
		got, err := s.CheckEpoch(ctx, ep.Value, now)
		require.NoError(t, err)
		assert.Equal(t, store.Epoch{Value: ep.Value, Event: store.EpochSame}, got)
	}
}

// TestEpochResetSeenByEveryInstance: several instances find the epoch gone
// at the same moment; one rewrites it, every other sees it changed, and
// all end up knowing the same new epoch: each reports the event once.
func TestEpochResetSeenByEveryInstance(t *testing.T) {
	s, r := newStore(t)
	ctx := t.Context()
	first, err := s.CheckEpoch(ctx, "", now)
	require.NoError(t, err)
	require.NoError(t, r.Client.Del(ctx, r.Prefix+"epoch").Err())

	const instances = 8
	got := make([]store.Epoch, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() {
			e, err := s.CheckEpoch(ctx, first.Value, now)
			assert.NoError(t, err)
			got[i] = e
		})
	}
	wg.Wait()
	events := map[store.EpochEvent]int{}
	for _, e := range got {
		events[e.Event]++
		assert.Equal(t, got[0].Value, e.Value, "every instance knows the same new epoch")
	}
	assert.Equal(t, map[store.EpochEvent]int{store.EpochVanished: 1, store.EpochChanged: instances - 1}, events)
	assert.NotEqual(t, first.Value, got[0].Value)
}

func TestCheckEpochUnavailable(t *testing.T) {
	s, r := newStore(t)
	_ = r.Client.Close()
	_, err := s.CheckEpoch(t.Context(), "", now)
	require.ErrorIs(t, err, store.ErrUnavailable)
}
