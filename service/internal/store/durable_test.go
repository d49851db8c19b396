package store_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// TestWaitReplicas: with WaitReplicas an enqueue is acknowledged only once
// the replicas have it; when too few confirm in time it is an error (the
// master has the write: a retry with its idempotency key replays it).
func TestWaitReplicas(t *testing.T) {
	master := redistest.NewProcess(t)
	u, err := url.Parse(master.URL())
	require.NoError(t, err)
	replica := redistest.NewProcess(t, "--replicaof", u.Hostname(), u.Port())
	mc := client(t, master.URL())
	rc := client(t, replica.URL())
	require.Eventually(t, func() bool {
		info, _ := rc.Info(t.Context(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	}, 10*time.Second, 20*time.Millisecond, "the replica syncs")

	ctx := t.Context()
	s := store.New(mc, store.Options{Prefix: "wait:{wxp}:", WaitReplicas: 1, IdempotencyTTL: time.Hour})
	for i := range 20 {
		m := partMsg("wait", now)
		m.ID = store.NewID(now.Add(time.Duration(i) * time.Millisecond))
		if i%2 == 0 {
			m.IdempotencyKey = "wait-key-" + m.ID
		}
		res, err := s.Enqueue(ctx, []store.NewMessage{m})
		require.NoError(t, err)
		// WAIT returned: the replica has the record already.
		n, err := rc.Exists(ctx, "wait:{wxp}:msg:"+res[0].ID).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "message %d is on the replica when it is acknowledged", i)
	}

	two := store.New(mc, store.Options{Prefix: "wait:{wxp}:", WaitReplicas: 2, WaitTimeout: 50 * time.Millisecond, IdempotencyTTL: time.Hour})
	m := partMsg("short", now)
	m.IdempotencyKey = "short-key"
	_, err = two.Enqueue(ctx, []store.NewMessage{m})
	require.ErrorIs(t, err, store.ErrUnavailable)
	assert.Contains(t, err.Error(), "write not confirmed by enough replicas: 1 of 2 replicas within 50ms")
	res, err := s.Enqueue(ctx, []store.NewMessage{m})
	require.NoError(t, err)
	assert.Equal(t, store.EnqueueResult{Outcome: store.Replayed, ID: m.ID}, res[0], "the master has it: a retry with its key replays it")

	replica.Stop()
	require.Eventually(t, func() bool {
		info, _ := mc.Info(ctx, "replication").Result()
		return strings.Contains(info, "connected_slaves:0")
	}, 10*time.Second, 20*time.Millisecond)
	_, err = store.New(mc, store.Options{Prefix: "wait:{wxp}:", WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond}).Enqueue(ctx, []store.NewMessage{partMsg("alone", now)})
	require.ErrorIs(t, err, store.ErrUnavailable, "no replica: nothing is acknowledged")
	assert.Contains(t, err.Error(), "0 of 1 replicas")
}

func client(t *testing.T, rawURL string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(rawURL)
	require.NoError(t, err)
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}
