package loadtest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/rediscluster/clustertest"
	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/scenarios"
)

func urlPath(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Path
}

// get answers the status of a GET (0: no answer).
func get(u string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func crashScenario(t *testing.T) scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.Get("crash-recovery")
	require.NoError(t, err)
	return sc.WithDefaults()
}

// TestEmbeddedStack: the in-process stack runs the timeline's control
// operations, applies the scenario's rules and writes its logs.
func TestEmbeddedStack(t *testing.T) {
	sc := crashScenario(t)
	logDir := filepath.Join(t.TempDir(), "logs")
	s, err := startEmbedded(t.Context(), sc, redisChoice{url: RedisMini}, logDir, 1000, nil)
	require.NoError(t, err)
	t.Cleanup(s.Close)

	mode, redis := s.Describe()
	assert.Equal(t, StackEmbedded, mode)
	assert.Equal(t, "miniredis (in-process)", redis)
	require.Len(t, s.ServiceURLs(), 2)
	rules, err := s.Mock().Faults(t.Context())
	require.NoError(t, err)
	assert.Len(t, rules, len(sc.Mock.Rules), "the scenario's rules")
	require.Contains(t, s.MockApps(), "default")
	assert.Equal(t, "/wechat/callback/default", urlPath(t, s.MockApps()["default"].CallbackURL))

	require.NoError(t, s.KillInstance(1))
	assert.Len(t, s.ServiceURLs(), 1, "a killed instance is not attacked")
	require.NoError(t, s.StartInstance(t.Context(), 1))
	assert.Len(t, s.ServiceURLs(), 2)
	require.NoError(t, s.RestartRedis(t.Context(), 10*time.Millisecond))
	for _, u := range s.ServiceURLs() {
		require.Eventually(t, func() bool { return get(u+"/readyz") == http.StatusOK }, 20*time.Second, 50*time.Millisecond, u)
	}
	for _, name := range []string{"mockwx.log", "wxpushd-0.1.log", "wxpushd-1.1.log", "wxpushd-1.2.log"} {
		assert.FileExists(t, filepath.Join(logDir, name))
	}
}

// TestStackRefusals: what cannot run says why and starts nothing.
func TestStackRefusals(t *testing.T) {
	sc := crashScenario(t)
	// A Redis the stack does not run (a private one: the stack's keys
	// have the default prefix).
	given := "redis://" + miniredis.RunT(t).Addr() + "/0"
	t.Run("restart_redis on a given Redis", func(t *testing.T) {
		s, err := startEmbedded(t.Context(), sc, redisChoice{url: given}, t.TempDir(), 1000, nil)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		assert.ErrorContains(t, s.RestartRedis(t.Context(), time.Millisecond), "needs a Redis the stack runs")
	})
	for name, tc := range map[string]struct {
		opts  Options
		usage bool
		want  string
	}{
		"unknown stack":         {Options{Stack: "vm"}, true, `stack "vm"`},
		"stack and service":     {Options{Stack: StackContainers, Services: []string{"http://x"}, MockURL: "http://m"}, true, "--stack starts a stack"},
		"redis with containers": {Options{Stack: StackContainers, RedisURL: given}, true, "--redis applies to the embedded stack"},
		"containers not linked": {Options{Stack: StackContainers}, false, "built without the container backend"},
		"bad cluster ports":     {Options{ClusterPorts: "7400"}, true, "WXPUSH_REDIS_CLUSTER_PORTS: port range \"7400\""},
	} {
		t.Run(name, func(t *testing.T) {
			tc.opts.OutDir, tc.opts.NoSelfCheck = t.TempDir(), true
			_, err := Run(t.Context(), sc, tc.opts)
			require.Error(t, err)
			assert.Equal(t, tc.usage, errors.Is(err, ErrUsage), err.Error())
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A scenario that asks for the cluster refuses every other Redis the
	// user names, and the container stack, before anything starts; the
	// URL's password is not shown.
	onCluster := sc
	onCluster.Stack.Redis = scenarios.RedisCluster
	for name, tc := range map[string]struct {
		opts Options
		want string
	}{
		"miniredis":    {Options{RedisURL: RedisMini}, "stack.redis: cluster runs on a private Redis Cluster, which --redis miniredis contradicts: leave --redis out"},
		"redis-server": {Options{RedisURL: RedisProcess}, "which --redis redis-server contradicts"},
		"a URL":        {Options{RedisURL: "redis://:hunter2-secret@127.0.0.1:1/0"}, "which --redis redis://:xxxxx@127.0.0.1:1/0 contradicts"},
		"containers":   {Options{Stack: StackContainers}, "only the embedded stack starts (the container stack runs one Redis): run it without --stack containers"},
	} {
		t.Run("cluster scenario with "+name, func(t *testing.T) {
			tc.opts.OutDir, tc.opts.NoSelfCheck = filepath.Join(t.TempDir(), "run"), true
			_, err := Run(t.Context(), onCluster, tc.opts)
			require.ErrorIs(t, err, ErrUsage)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "scenario crash-recovery:")
			assert.NotContains(t, err.Error(), "hunter2")
			assert.NoDirExists(t, tc.opts.OutDir, "nothing ran")
		})
	}
	t.Run("remote refuses control", func(t *testing.T) {
		d, err := harness.ConnectExternal([]string{"http://127.0.0.1:1"}, "http://127.0.0.1:1", "", "k")
		require.NoError(t, err)
		r := &deployment{d: d, mode: "remote"}
		assert.ErrorIs(t, r.KillInstance(0), errRemote)
		assert.ErrorIs(t, r.StartInstance(context.Background(), 0), errRemote)
		assert.ErrorIs(t, r.RestartRedis(context.Background(), 0), errRemote)
	})
}

// TestEmbeddedStackOnCluster: a scenario with stack.redis: cluster and
// stack.partitions runs its instances on a private Redis Cluster, with
// that partition count recorded by wxpushd in the cluster; a run against
// it delivers every message once; in remote mode the two fields are
// noted, not applied.
func TestEmbeddedStackOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and the stack")
	}
	clustertest.Need(t)
	sc, err := scenarios.Parse([]byte(`name: tiny-cluster
description: a few messages through two instances on the cluster
stack: {instances: 2, redis: cluster, partitions: 3}
load:
  duration: 2s
  pacer: {rate: 20}
  duplicate_ratio: 0.1
  batch: {share: 0.1, size: 3}
expect:
  - delivery.lost == 0
  - delivery.duplicates == 0
  - delivery.delivered == delivery.accepted
`), "tiny-cluster.yaml")
	require.NoError(t, err)
	s, err := startEmbedded(t.Context(), sc, redisChoice{clusterPorts: os.Getenv(rediscluster.PortsVar)}, filepath.Join(t.TempDir(), "logs"), 100_000, nil)
	require.NoError(t, err)
	t.Cleanup(s.Close)

	mode, redisDesc := s.Describe()
	assert.Equal(t, StackEmbedded, mode)
	assert.Contains(t, redisDesc, "Redis Cluster (3 masters + 3 replicas")
	assert.Contains(t, redisDesc, ", 3 queue partitions")
	require.True(t, strings.HasPrefix(s.redisURL(), "cluster+redis://"), redisurl.Redacted(s.redisURL()))
	o, err := redis.ParseClusterURL(strings.TrimPrefix(s.redisURL(), "cluster+"))
	require.NoError(t, err)
	rdb := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	for _, u := range s.ServiceURLs() {
		require.Eventually(t, func() bool { return get(u+"/readyz") == http.StatusOK }, 30*time.Second, 50*time.Millisecond, u)
	}
	// wxpushd records its partition count at start (the store's
	// "partitions" key under the default prefix).
	got, err := rdb.Get(t.Context(), "wxp:{wxp}:partitions").Result()
	require.NoError(t, err)
	assert.Equal(t, "3", got, "the instances' --partitions")

	res, err := Run(t.Context(), sc, Options{OutDir: t.TempDir(), NoSelfCheck: true,
		Services: s.ServiceURLs(), MockURL: s.Mock().BaseURL(), APIKey: s.APIKey()})
	require.NoError(t, err)
	sum := res.Summary
	assert.True(t, sum.Passed, "%+v", sum.Expectations)
	assert.Positive(t, sum.Delivery.Accepted)
	assert.Equal(t, sum.Delivery.Accepted, sum.Delivery.Delivered)
	assert.Contains(t, sum.Run.Warnings, "stack.redis and stack.partitions describe the embedded stack: the remote deployment runs on its own Redis with its own partition count")
}
