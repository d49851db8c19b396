package harness_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/rediscluster/clustertest"
)

// TestInProcessCluster: on a private Redis Cluster the instances get a
// cluster+redis:// URL and become ready; StopRedis stops every node and
// StartRedis brings them back with their data; FlushRedis empties the
// cluster; CutRedis says why it cannot be done; gates are refused.
func TestInProcessCluster(t *testing.T) {
	ports := clustertest.Need(t)
	ctx := t.Context()

	gated := testSpec(1)
	gated.Redis, gated.ClusterPorts = harness.RedisCluster, ports
	_, err := harness.StartInProcess(ctx, gated)
	assert.ErrorContains(t, err, "no gate can stand in front of it")

	spec := testSpec(2)
	spec.Gates, spec.Redis, spec.ClusterPorts = false, harness.RedisCluster, ports
	d, err := harness.StartInProcess(ctx, spec)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Close(context.Background())) })
	assert.Contains(t, d.Redis(), "Redis Cluster")
	require.True(t, strings.HasPrefix(d.RedisURL(), "cluster+redis://"), d.RedisURL())
	for i := range 2 {
		eventually(t, "instance ready", func() bool { return ready(d.ServiceURL(i)) })
	}
	o, err := redis.ParseClusterURL(strings.TrimPrefix(d.RedisURL(), "cluster+"))
	require.NoError(t, err)
	assert.Len(t, o.Addrs, 6, "the URL names every node")
	rdb := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Set(ctx, "harness-test:kept", "v", 0).Err())

	err = d.CutRedis(ctx, 0)
	assert.True(t, errors.Is(err, harness.ErrUnsupported), "%v", err)
	assert.ErrorContains(t, err, "CLUSTER SLOTS")

	require.NoError(t, d.StopRedis(ctx))
	eventually(t, "no instance ready without Redis", func() bool { return !ready(d.ServiceURL(0)) && !ready(d.ServiceURL(1)) })
	require.NoError(t, d.StartRedis(ctx))
	eventually(t, "ready again", func() bool { return ready(d.ServiceURL(0)) && ready(d.ServiceURL(1)) })
	got, err := rdb.Get(ctx, "harness-test:kept").Result()
	require.NoError(t, err, "a key written before StopRedis")
	assert.Equal(t, "v", got)

	require.NoError(t, d.FlushRedis(ctx))
	assert.ErrorIs(t, rdb.Get(ctx, "harness-test:kept").Err(), redis.Nil, "a key after FlushRedis")
}
