package redistest

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of redis-server processes on loopback,
// every master without a replica.
type Cluster struct {
	// Client is a cluster client for it.
	Client *redis.ClusterClient
	// Addrs are the masters' addresses.
	Addrs []string
}

// URL is a cluster+redis:// URL naming every master, the form wxpushd's
// --redis-url takes for a cluster.
func (c *Cluster) URL() string {
	q := make([]string, 0, len(c.Addrs)-1)
	for _, a := range c.Addrs[1:] {
		q = append(q, "addr="+a)
	}
	return "cluster+redis://" + c.Addrs[0] + "?" + strings.Join(q, "&")
}

// NewCluster starts a Redis Cluster of n masters (slots split evenly, no
// persistence), waits until it serves every slot, and stops it at the end
// of the test. It skips the test when redis-server or redis-cli is not on
// PATH (CI installs them).
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("redistest: %s is not installed", bin)
		}
	}
	c := &Cluster{}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		// The cluster bus listens on port+10000: it must fit.
		if port+10000 > 65535 {
			port -= 20000
		}
		dir := t.TempDir()
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf",
			"--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatalf("redistest: start redis-server: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := "127.0.0.1:" + strconv.Itoa(port)
		waitListening(t, addr)
		c.Addrs = append(c.Addrs, addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range c.Addrs {
		node := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := node.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("redistest: cluster on %s not ready: %v %s", a, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = node.Close()
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = c.Client.Close() })
	if err := c.Client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() }); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	return c
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server did not start on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
