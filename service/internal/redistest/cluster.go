package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/rediscluster/clustertest"
)

// Cluster is a real Redis Cluster of redis-server processes on loopback
// (package internal/rediscluster).
type Cluster struct {
	// Client is a cluster client for it.
	Client *redis.ClusterClient
	// Addrs are every node's address, masters and replicas.
	Addrs []string
	// Nodes is the cluster itself: Masters, KillMaster, WaitFailover.
	Nodes *rediscluster.Cluster
}

// URL is a cluster+redis:// URL naming every node, the form wxpushd's
// --redis-url takes for a cluster.
func (c *Cluster) URL() string { return c.Nodes.URL() }

// NewCluster starts a Redis Cluster of n masters without replicas (slots
// split evenly, no persistence), waits until it serves every slot, and
// stops it at the end of the test. It skips the test when redis-server or
// redis-cli is not on PATH, and fails it instead under CI=true (.ci/run
// installs them). WXPUSH_REDIS_CLUSTER_PORTS ("LO-HI") confines the nodes
// to a port range.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return NewClusterWithReplicas(t, n, 0)
}

// NewClusterWithReplicas is NewCluster with replicas replicas per master,
// each attached to its master before it returns; the node timeout is 1 s,
// so a failover after Nodes.KillMaster takes about 2 s.
func NewClusterWithReplicas(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	ports := clustertest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := rediscluster.Start(ctx, rediscluster.Options{Masters: masters, Replicas: replicas,
		NodeTimeout: time.Second, Dir: t.TempDir(), Ports: ports})
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { _ = nodes.Close() })
	c := &Cluster{Client: nodes.Client(), Addrs: nodes.Addrs(), Nodes: nodes}
	t.Cleanup(func() { _ = c.Client.Close() })
	if err := c.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() }); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	return c
}
