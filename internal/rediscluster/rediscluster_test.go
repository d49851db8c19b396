package rediscluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/rediscluster/clustertest"
)

// start starts a cluster for t (on the ports of WXPUSH_REDIS_CLUSTER_PORTS
// when set), closed at the end. Without redis-server or redis-cli it skips,
// or fails under CI=true (.ci/run installs them).
func start(t *testing.T, opts rediscluster.Options) *rediscluster.Cluster {
	t.Helper()
	opts.Ports = clustertest.Need(t)
	begin := time.Now()
	c, err := rediscluster.Start(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	t.Logf("cluster of %d masters, %d replicas each, ready in %s", len(c.Masters()), opts.Replicas, time.Since(begin).Round(time.Millisecond))
	return c
}

// keyOn returns a key whose slot master addr serves.
func keyOn(t *testing.T, ctx context.Context, rdb *redis.ClusterClient, addr string) string {
	t.Helper()
	for i := range 10000 {
		k := "k" + strconv.Itoa(i)
		m, err := rdb.MasterForKey(ctx, k)
		require.NoError(t, err)
		if m.Options().Addr == addr {
			return k
		}
	}
	t.Fatalf("no key on %s", addr)
	return ""
}

// setReplicated sets k to v on the master at addr and waits, on the same
// connection, until its replica has it: replication is asynchronous, and
// a write the replica has not got when its master is killed is lost
// (which is not what the tests that kill a master are about).
func setReplicated(t *testing.T, addr, k, v string) {
	t.Helper()
	pipe := direct(t, addr).Pipeline()
	pipe.Set(t.Context(), k, v, 0)
	wait := pipe.Do(t.Context(), "WAIT", 1, 5000)
	_, err := pipe.Exec(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 1, wait.Val(), "the replica of %s has %s", addr, k)
}

func direct(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestStartWithReplicas: 3 masters and 3 replicas come up, every master
// with one replica; a key written through a cluster client is on its
// master and reaches the master's replica; the URL names every node.
func TestStartWithReplicas(t *testing.T) {
	ctx := t.Context()
	c := start(t, rediscluster.Options{Masters: 3, Replicas: 1})
	require.Len(t, c.Addrs(), 6)
	masters := c.Masters()
	require.Len(t, masters, 3)
	for _, m := range masters {
		assert.Contains(t, c.Addrs(), m)
	}
	u := c.URL()
	assert.True(t, strings.HasPrefix(u, "cluster+redis://"+c.Addrs()[0]+"?"), u)
	assert.Equal(t, 5, strings.Count(u, "addr="), u)
	o, err := redis.ParseClusterURL(strings.TrimPrefix(u, "cluster+"))
	require.NoError(t, err)
	assert.ElementsMatch(t, c.Addrs(), o.Addrs)

	rdb := c.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	for i, m := range masters {
		k := keyOn(t, ctx, rdb, m)
		require.NoError(t, rdb.Set(ctx, k, "v"+strconv.Itoa(i), 0).Err())
		got, err := direct(t, m).Get(ctx, k).Result()
		require.NoError(t, err, "key %s on master %s", k, m)
		assert.Equal(t, "v"+strconv.Itoa(i), got)
		n, err := direct(t, m).Wait(ctx, 1, 5*time.Second).Result()
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, "master %s: replicas that acknowledged the write", m)
	}
	err = c.Stop(ctx)
	assert.ErrorIs(t, err, rediscluster.ErrUnsupported, "Stop without append-only files")
	assert.ErrorIs(t, c.Start(ctx), rediscluster.ErrUnsupported, "Start without append-only files")
	assert.NoError(t, rdb.Ping(ctx).Err(), "the refused Stop stopped something")
}

// TestFailover: SIGKILL of a master; a replica takes its slots, a key
// written before the kill is still there, and writes to those slots
// succeed through a new cluster client at once and through one opened
// before the kill once it reloads the slot map (go-redis reloads it on
// MOVED, or every ClusterStateReloadInterval; a dial error to the dead
// master does not make it reload).
func TestFailover(t *testing.T) {
	ctx := t.Context()
	c := start(t, rediscluster.Options{Masters: 3, Replicas: 1, NodeTimeout: time.Second})
	old := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ClusterStateReloadInterval: time.Second})
	t.Cleanup(func() { _ = old.Close() })
	victim := c.Masters()[1]
	k := keyOn(t, ctx, old, victim)
	setReplicated(t, victim, k, "before")

	killed := time.Now()
	dead, err := c.KillMaster(1)
	require.NoError(t, err)
	assert.Equal(t, victim, dead)
	require.NoError(t, c.WaitFailover(ctx, dead))
	t.Logf("failover: cluster ok %s after SIGKILL of master %s (node timeout 1 s)", time.Since(killed).Round(time.Millisecond), dead)
	now := c.Masters()
	require.Len(t, now, 3)
	assert.NotContains(t, now, dead)
	assert.NotEqual(t, victim, now[1], "master 1 is the promoted replica")

	rdb := c.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	got, err := rdb.Get(ctx, k).Result()
	require.NoError(t, err, "reading %s after the failover", k)
	assert.Equal(t, "before", got)
	k2 := keyOn(t, ctx, rdb, now[1])
	for i := range 20 {
		k := fmt.Sprintf("{%s}-after-%d", k2, i) // the slot of k2
		require.NoError(t, rdb.Set(ctx, k, "after", 0).Err(), "writing %s after the failover", k)
	}
	require.NoError(t, rdb.Set(ctx, k2, "after", 0).Err())
	got, err = direct(t, now[1]).Get(ctx, k2).Result()
	require.NoError(t, err)
	assert.Equal(t, "after", got, "the new master serves the dead one's slots")

	reloaded := time.Now()
	require.Eventually(t, func() bool { return old.Set(ctx, k, "after", 0).Err() == nil }, 10*time.Second, 100*time.Millisecond,
		"the client opened before the kill still cannot write %s", k)
	t.Logf("the client opened before the kill wrote again %s after the failover", time.Since(reloaded).Round(time.Millisecond))

	_, err = c.KillMaster(3)
	assert.Error(t, err, "a master out of range")
}

// TestStopStart: with append-only files, Stop and Start keep the data and
// bring back a master killed before (as a replica of its successor).
func TestStopStart(t *testing.T) {
	ctx := t.Context()
	c := start(t, rediscluster.Options{Masters: 3, Replicas: 1, Persistent: true, NodeTimeout: time.Second})
	rdb := c.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	keys := map[string]string{}
	for i, m := range c.Masters() {
		k := keyOn(t, ctx, rdb, m)
		keys[k] = "v" + strconv.Itoa(i)
		setReplicated(t, m, k, keys[k])
	}
	dead, err := c.KillMaster(0)
	require.NoError(t, err)
	require.NoError(t, c.WaitFailover(ctx, dead))

	require.NoError(t, c.Stop(ctx))
	for _, a := range c.Addrs() {
		assert.Error(t, direct(t, a).Ping(ctx).Err(), "node %s answers after Stop", a)
	}
	begin := time.Now()
	require.NoError(t, c.Start(ctx))
	t.Logf("restart of every node: ready in %s", time.Since(begin).Round(time.Millisecond))
	assert.NotContains(t, c.Masters(), dead, "the killed master came back as a replica")
	for k, v := range keys {
		got, err := rdb.Get(ctx, k).Result()
		require.NoError(t, err, "reading %s after the restart", k)
		assert.Equal(t, v, got)
	}
	require.NoError(t, c.FlushAll(ctx))
	for k := range keys {
		assert.ErrorIs(t, rdb.Get(ctx, k).Err(), redis.Nil, "%s after FlushAll", k)
	}
}

// TestStartRelativeDir: a Dir relative to the working directory (wxload's
// default run directory, runs/NAME-TIME, is one) works: redis-server
// changes to its --dir before it opens the log and nodes.conf.
func TestStartRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	c := start(t, rediscluster.Options{Masters: 3, Dir: filepath.Join("runs", "x", "redis-cluster")})
	require.NoError(t, c.Client().Ping(t.Context()).Err())
	for _, a := range c.Addrs() {
		_, port, _ := strings.Cut(a, ":")
		assert.FileExists(t, filepath.Join("runs", "x", "redis-cluster", "node-"+port, "redis.log"))
	}
}

// TestStartRefuses: too few masters, and an unusable port range.
func TestStartRefuses(t *testing.T) {
	_, err := rediscluster.Start(t.Context(), rediscluster.Options{Masters: 2})
	assert.ErrorContains(t, err, "at least 3 masters")
	for _, s := range []string{"7100", "7399-7100", "x-y", "0-10", "60000-60010"} {
		_, err := rediscluster.ParsePortRange(s)
		assert.Error(t, err, "%q", s)
	}
	r, err := rediscluster.ParsePortRange(" 7100-7399 ")
	require.NoError(t, err)
	assert.Equal(t, rediscluster.PortRange{Lo: 7100, Hi: 7399}, r)
	r, err = rediscluster.ParsePortRange("")
	require.NoError(t, err)
	assert.True(t, r.IsZero())
}
