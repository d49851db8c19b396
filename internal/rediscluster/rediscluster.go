// Package rediscluster starts a real Redis Cluster on loopback for tests
// and CI: M masters and R replicas per master, each a redis-server process
// with --cluster-enabled yes in a directory of its own, joined by
// redis-cli --cluster create. Start returns once every node reports
// cluster_state:ok, every slot is served and every master has its
// replicas attached; KillMaster and WaitFailover exercise a failover;
// Stop and Start restart every node with its data (Options.Persistent).
//
// Both internal/harness (the in-process deployment's cluster kind) and
// service/internal/redistest (NewCluster) start their clusters here.
package rediscluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// PortsVar names the environment variable the test helpers that start
// clusters (service/internal/redistest, conformance, this package's tests)
// read into Options.Ports: "LO-HI", for a machine where each user of Redis
// has its own port range. This package itself reads no environment.
const PortsVar = "WXPUSH_REDIS_CLUSTER_PORTS"

// ErrUnsupported is wrapped by the errors of Stop and Start on a cluster
// started without Options.Persistent (its nodes would come back empty).
var ErrUnsupported = errors.New("rediscluster: operation not supported by this cluster")

// slots is the number of hash slots of a Redis Cluster.
const slots = 16384

// Defaults of Options.
const (
	DefaultMasters     = 3
	DefaultNodeTimeout = 1500 * time.Millisecond
	// startTimeout bounds Start and Cluster.Start when ctx has no
	// earlier deadline.
	startTimeout = 60 * time.Second
)

// Options describe a cluster. Zero values take the defaults.
type Options struct {
	// Masters is the number of masters, at least 3 (redis-cli refuses
	// fewer); 0 means DefaultMasters.
	Masters int
	// Replicas is the number of replicas per master.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a node may not answer
	// before the others count it failed (0: DefaultNodeTimeout). A
	// failover takes about twice it.
	NodeTimeout time.Duration
	// Persistent gives every node an append-only file (fsync every
	// second), so Stop and Start keep the data; without it they return
	// ErrUnsupported.
	Persistent bool
	// Dir holds one directory per node (node-PORT: nodes.conf, redis.log,
	// the append-only files); "" means a temporary directory that Close
	// removes.
	Dir string
	// Ports is the loopback port range the nodes listen on (a node's
	// cluster bus listens on its port + 10000, which must be free too);
	// the zero value lets the kernel pick free ports.
	Ports PortRange
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct {
	Lo, Hi int
}

// IsZero reports whether r is the zero range (any free port).
func (r PortRange) IsZero() bool { return r == PortRange{} }

// ParsePortRange parses "LO-HI" (both included; HI+10000 must be a port,
// for the cluster bus). An empty string is the zero range.
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PortRange{}, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	r := PortRange{}
	var err1, err2 error
	r.Lo, err1 = strconv.Atoi(strings.TrimSpace(lo))
	r.Hi, err2 = strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || r.Lo < 1 || r.Hi < r.Lo || r.Hi+10000 > 65535 {
		return PortRange{}, fmt.Errorf("rediscluster: port range %q: want LO-HI with 1 <= LO <= HI <= 55535 (bus ports are +10000), e.g. 7100-7399", s)
	}
	return r, nil
}

// Cluster is a running Redis Cluster. Its methods are safe for concurrent
// use.
type Cluster struct {
	opts    Options
	bin     string
	tmpDir  string // removed at Close
	nodes   []*node
	mu      sync.Mutex
	masters []string // as of the last wait, ordered by first slot
}

// node is one redis-server process.
type node struct {
	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func (n *node) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// Start starts the nodes, creates the cluster and waits until it is
// ready: every node reports cluster_state:ok and all 16384 slots served,
// every node sees the same masters, and each master has its replicas
// attached (master_link_status:up). On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Masters == 0 {
		opts.Masters = DefaultMasters
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = DefaultNodeTimeout
	}
	if opts.Masters < 3 || opts.Replicas < 0 {
		return nil, fmt.Errorf("rediscluster: %d masters, %d replicas each: need at least 3 masters", opts.Masters, opts.Replicas)
	}
	ctx, cancel := withDefaultTimeout(ctx, startTimeout)
	defer cancel()
	c := &Cluster{opts: opts}
	for _, name := range []string{"redis-server", "redis-cli"} {
		bin, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("rediscluster: %s is not installed (apt-get install redis-server)", name)
		}
		if name == "redis-server" {
			c.bin = bin
		}
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if opts.Dir == "" {
		if c.tmpDir, err = os.MkdirTemp("", "wxpush-cluster-"); err != nil {
			return nil, err
		}
		c.opts.Dir = c.tmpDir
	} else if c.opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		// redis-server changes to --dir before it opens its log and
		// nodes.conf: their paths must not be relative to where it was.
		return nil, fmt.Errorf("rediscluster: %w", err)
	}
	total := opts.Masters * (1 + opts.Replicas)
	taken := map[int]bool{}
	for range total {
		n, err := c.startNewNode(ctx, taken)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.Replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("rediscluster: redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// startNewNode picks a port (and its bus port) not in taken and starts a
// node on it, trying other ports when another process took this one in
// the meantime.
func (c *Cluster) startNewNode(ctx context.Context, taken map[int]bool) (*node, error) {
	var last error
	for range 10 {
		port, err := c.pickPort(taken)
		if err != nil {
			return nil, err
		}
		taken[port] = true
		n := &node{port: port, dir: filepath.Join(c.opts.Dir, "node-"+strconv.Itoa(port))}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		err = c.startNode(ctx, n)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("rediscluster: no free port after 10 tries: %w", last)
}

var errPortTaken = errors.New("port taken")

// pickPort returns a port whose bus port (+10000) is free too, from the
// range (starting at a random place, so that concurrent users of one range
// rarely race) or from the kernel.
func (c *Cluster) pickPort(taken map[int]bool) (int, error) {
	r := c.opts.Ports
	if r.IsZero() {
		for range 100 {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port := ln.Addr().(*net.TCPAddr).Port
			_ = ln.Close()
			if port+10000 <= 65535 && !taken[port] && portFree(port+10000) {
				return port, nil
			}
		}
		return 0, errors.New("rediscluster: found no free port whose bus port (+10000) is free")
	}
	size := r.Hi - r.Lo + 1
	off := rand.IntN(size)
	for i := range size {
		port := r.Lo + (off+i)%size
		if !taken[port] && portFree(port) && portFree(port+10000) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("rediscluster: no free port (with its bus port +10000) in %d-%d", r.Lo, r.Hi)
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// startNode starts n's redis-server and waits until it answers PING with
// its data loaded; errPortTaken when it could not listen.
func (c *Cluster) startNode(ctx context.Context, n *node) error {
	logFile := filepath.Join(n.dir, "redis.log")
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(n.port), "--dir", n.dir,
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(c.opts.NodeTimeout.Milliseconds(), 10),
		// A replica always takes over a failed master, however long its
		// link was down: a test cluster prefers availability.
		"--cluster-replica-validity-factor", "0",
		// A replica's first sync starts at once, not after the default
		// 5 s wait for more replicas to share one transfer.
		"--repl-diskless-sync-delay", "0",
		"--save", "", "--logfile", logFile,
	}
	if c.opts.Persistent {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(c.bin, args...)
	// Its own process group (a Ctrl-C meant for the test does not stop it
	// before the teardown does), killed with its parent where the kernel
	// can.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rediscluster: redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if Ping(ctx, n.addr()) {
			return nil
		}
		select {
		case <-done:
			log := tail(logFile, 5)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w: %d", errPortTaken, n.port)
			}
			return fmt.Errorf("rediscluster: redis-server on %d exited at start:\n%s", n.port, log)
		case <-ctx.Done():
			n.kill()
			return fmt.Errorf("rediscluster: redis-server on %d: %w", n.port, ctx.Err())
		case <-deadline.C:
			n.kill()
			return fmt.Errorf("rediscluster: redis-server on %d did not answer within 10 s:\n%s", n.port, tail(logFile, 5))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running reports whether n's process runs.
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// signal sends sig to n's process and waits until it exits, killing it
// after wait; a node that does not run is left alone.
func (n *node) signal(sig syscall.Signal, wait time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (n *node) kill() { n.signal(syscall.SIGKILL, 10*time.Second) }

// Ping reports whether a Redis at addr (a cluster node or not) answers
// PING with its data loaded (a server still loading answers -LOADING):
// the readiness a freshly started redis-server is waited for with.
func Ping(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// tail returns the last n lines of a file ("" when it cannot be read).
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Addrs are every node's host:port, masters and replicas, in the order
// the nodes were started.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr()
	}
	return addrs
}

// Masters are the masters' host:port as of the cluster's last wait (Start,
// WaitFailover, Cluster.Start), ordered by the first slot each serves:
// Masters()[i] serves the i-th slot range, before and after a failover.
func (c *Cluster) Masters() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.masters)
}

// URL is a cluster+redis:// URL naming every node, the form wxpushd's
// --redis-url takes for a cluster:
// cluster+redis://host:port?addr=host:port&addr=...
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	q := make([]string, 0, len(addrs)-1)
	for _, a := range addrs[1:] {
		q = append(q, "addr="+a)
	}
	return "cluster+redis://" + addrs[0] + "?" + strings.Join(q, "&")
}

// Client returns a new go-redis cluster client seeded with every node; the
// caller closes it.
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
}

func (c *Cluster) node(addr string) *node {
	for _, n := range c.nodes {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// KillMaster kills master i of Masters() with SIGKILL (no shutdown, no
// final write) and returns its address; WaitFailover waits for a replica
// to take its place.
func (c *Cluster) KillMaster(i int) (string, error) {
	masters := c.Masters()
	if i < 0 || i >= len(masters) {
		return "", fmt.Errorf("rediscluster: master %d out of range (0..%d)", i, len(masters)-1)
	}
	n := c.node(masters[i])
	if n == nil || !n.running() {
		return "", fmt.Errorf("rediscluster: master %s does not run", masters[i])
	}
	n.kill()
	return masters[i], nil
}

// WaitFailover waits until the surviving nodes count the node at dead
// failed, a replica has taken over its slots, and every surviving node
// again reports cluster_state:ok with all 16384 slots served; then
// Masters() names the new master in the dead one's place.
func (c *Cluster) WaitFailover(ctx context.Context, dead string) error {
	ctx, cancel := withDefaultTimeout(ctx, startTimeout)
	defer cancel()
	if err := c.poll(ctx, false, dead); err != nil {
		return fmt.Errorf("rediscluster: no failover of %s: %w", dead, err)
	}
	return nil
}

// waitReady waits until the cluster is whole, each master with its
// replicas (Start, Cluster.Start).
func (c *Cluster) waitReady(ctx context.Context) error {
	if err := c.poll(ctx, true, ""); err != nil {
		return fmt.Errorf("rediscluster: cluster not ready: %w", err)
	}
	return nil
}

// poll runs check(replicas, dead) until it passes, then takes its masters
// as Masters(); when ctx ends first, the error names check's last one.
func (c *Cluster) poll(ctx context.Context, replicas bool, dead string) error {
	var last error
	for {
		masters, err := c.check(ctx, replicas, dead)
		if err == nil {
			c.mu.Lock()
			c.masters = masters
			c.mu.Unlock()
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string
	flags            []string
	firstSlot        int // -1 without slots
}

func (n clusterNode) is(flag string) bool { return slices.Contains(n.flags, flag) }

// parseNodes parses CLUSTER NODES' answer.
func parseNodes(s string) []clusterNode {
	var out []clusterNode
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{id: f[0], addr: addr, master: f[3], flags: strings.Split(f[2], ","), firstSlot: -1}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated
				continue
			}
			lo, _, _ := strings.Cut(s, "-")
			if v, err := strconv.Atoi(lo); err == nil && (n.firstSlot < 0 || v < n.firstSlot) {
				n.firstSlot = v
			}
		}
		out = append(out, n)
	}
	return out
}

// check asks every node that should run (all but skip) whether the
// cluster is whole, and returns the masters ordered by first slot. With
// replicas, each master must have Options.Replicas replicas whose link to
// it is up.
func (c *Cluster) check(ctx context.Context, replicas bool, skip string) ([]string, error) {
	var masters []string
	for _, n := range c.nodes {
		addr := n.addr()
		if addr == skip {
			continue
		}
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
			ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: 1})
		got, err := c.checkNode(ctx, rdb, replicas, skip)
		_ = rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		if masters != nil && !slices.Equal(masters, got) {
			return nil, fmt.Errorf("%s sees masters %v, another node %v", addr, got, masters)
		}
		masters = got
	}
	return masters, nil
}

func (c *Cluster) checkNode(ctx context.Context, rdb *redis.Client, replicas bool, skip string) ([]string, error) {
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		fields[k] = v
	}
	if fields["cluster_state"] != "ok" || fields["cluster_slots_ok"] != strconv.Itoa(slots) {
		return nil, fmt.Errorf("cluster_state:%s, cluster_slots_ok:%s", fields["cluster_state"], fields["cluster_slots_ok"])
	}
	if known := fields["cluster_known_nodes"]; known != strconv.Itoa(len(c.nodes)) {
		return nil, fmt.Errorf("knows %s nodes of %d", known, len(c.nodes))
	}
	raw, err := rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	nodes := parseNodes(raw)
	type master struct {
		addr      string
		firstSlot int
		replicas  int
	}
	byID := map[string]*master{}
	for _, n := range nodes {
		if n.addr == skip {
			if !n.is("fail") {
				return nil, fmt.Errorf("does not count %s failed yet (%v)", skip, n.flags)
			}
			continue
		}
		if n.is("fail") || n.is("fail?") || n.is("handshake") || n.is("noaddr") {
			return nil, fmt.Errorf("sees %s as %v", n.addr, n.flags)
		}
		if n.is("master") && n.firstSlot >= 0 {
			byID[n.id] = &master{addr: n.addr, firstSlot: n.firstSlot}
		}
	}
	if len(byID) != c.opts.Masters {
		return nil, fmt.Errorf("sees %d masters with slots, want %d", len(byID), c.opts.Masters)
	}
	if replicas {
		for _, n := range nodes {
			if n.is("slave") {
				if m := byID[n.master]; m != nil {
					m.replicas++
				}
			}
		}
		for _, m := range byID {
			if m.replicas != c.opts.Replicas {
				return nil, fmt.Errorf("sees %d replicas of %s, want %d", m.replicas, m.addr, c.opts.Replicas)
			}
		}
		repl, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return nil, err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return nil, errors.New("replica whose link to its master is not up")
		}
	}
	list := make([]*master, 0, len(byID))
	for _, m := range byID {
		list = append(list, m)
	}
	slices.SortFunc(list, func(a, b *master) int { return a.firstSlot - b.firstSlot })
	out := make([]string, len(list))
	for i, m := range list {
		out[i] = m.addr
	}
	return out, nil
}

// Stop stops every node gracefully (SIGTERM: each writes its append-only
// file and nodes.conf), in parallel, killing a node that takes more than
// 10 s. Without Options.Persistent it returns ErrUnsupported and stops
// nothing.
func (c *Cluster) Stop(context.Context) error {
	if !c.opts.Persistent {
		return fmt.Errorf("stopping a cluster whose nodes have no append-only file would lose its data: %w", ErrUnsupported)
	}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { n.signal(syscall.SIGTERM, 10*time.Second) })
	}
	wg.Wait()
	return nil
}

// Start starts every node that does not run (stopped by Stop, or killed
// by KillMaster) on its port with its directory, and waits until the
// cluster is ready again, as Start does (a master killed and failed over
// comes back as a replica). Without Options.Persistent it returns
// ErrUnsupported and starts nothing.
func (c *Cluster) Start(ctx context.Context) error {
	if !c.opts.Persistent {
		return fmt.Errorf("starting the nodes of a cluster without append-only files would bring them back empty: %w", ErrUnsupported)
	}
	ctx, cancel := withDefaultTimeout(ctx, startTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		if !n.running() {
			wg.Go(func() { errs[i] = c.startNode(ctx, n) })
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.waitReady(ctx)
}

// FlushAll deletes every key of the cluster (FLUSHALL on each master; the
// replicas follow).
func (c *Cluster) FlushAll(ctx context.Context) error {
	rdb := c.Client()
	defer rdb.Close()
	return rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	})
}

// Close kills every node (SIGKILL) and removes the temporary directory,
// if Start made one. Closing twice is fine.
func (c *Cluster) Close() error {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.kill)
	}
	wg.Wait()
	if c.tmpDir != "" {
		return os.RemoveAll(c.tmpDir)
	}
	return nil
}
