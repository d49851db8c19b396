package store_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// beforeNth runs fn once, just before the n-th command (1-based) that
// goes through the client it hooks.
type beforeNth struct {
	n    int32
	seen atomic.Int32
	fn   func()
}

func (h *beforeNth) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeNth) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *beforeNth) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.seen.Add(1) == h.n {
			h.fn()
		}
		return next(ctx, cmd)
	}
}

// TestReviewCheckPartitionsRaceOnAnOldQueue: two instances start at once
// with --partitions 4 on a store that holds a queue written before counts
// were recorded. The second instance's check runs while the first one's
// is under way (before its second command, if it sends one). Neither
// may start: the old
// queue's messages are under the prefix itself, where 4 partitions never
// look.
func TestReviewCheckPartitionsRaceOnAnOldQueue(t *testing.T) {
	r := redistest.New(t)
	ctx := t.Context()
	_, err := store.New(r.Client, store.Options{Prefix: r.Prefix}).Enqueue(ctx, []store.NewMessage{partMsg("old", now)})
	require.NoError(t, err)

	o, err := redis.ParseURL(r.URL)
	require.NoError(t, err)
	first := redis.NewClient(o)
	t.Cleanup(func() { _ = first.Close() })
	require.NoError(t, first.Ping(ctx).Err(), "connected: the hook counts the check's own commands")
	second := store.New(r.Client, store.Options{Prefix: r.Prefix, Partitions: 4})
	var secondErr error
	ran := false
	check := func() { secondErr, ran = second.CheckPartitions(ctx), true }
	first.AddHook(&beforeNth{n: 2, fn: check})

	firstErr := store.New(first, store.Options{Prefix: r.Prefix, Partitions: 4}).CheckPartitions(ctx)
	if !ran {
		// The first check was one command (an atomic step): the second
		// one can only come after it.
		check()
	}
	assert.ErrorIs(t, firstErr, store.ErrPartitions, "the first instance")
	assert.ErrorIs(t, secondErr, store.ErrPartitions, "the second instance, checking while the first one did")
	assert.NoError(t, store.New(r.Client, store.Options{Prefix: r.Prefix}).CheckPartitions(ctx), "one partition still starts")
}
