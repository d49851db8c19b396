package harness

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// InProcess is a deployment in this process, on loopback: Redis
// (miniredis, a private redis-server, a private Redis Cluster, or a given
// one), mockwx, a
// forwarder that hands the mock's callbacks to an instance that is up (as
// a load balancer would), and N wxpushd instances, each optionally
// reaching Redis through its own gate.
type InProcess struct {
	spec      Spec
	cfg       wxpushd.Config // the instances' settings, before per-instance fields
	apiKey    string
	redisURL  *url.URL
	redisDesc string
	mini      *miniredis.Miniredis  // the in-process Redis, if that is the one
	proc      *RedisServer          // the private redis-server, if that is the one
	cluster   *rediscluster.Cluster // the private Redis Cluster, if that is the one
	tmpDir    string                // removed at Close
	mock      *mockwx.Server
	mockHTTP  *http.Server
	admin     *mockwx.Client
	fwdHTTP   *http.Server
	rr        atomic.Uint64
	handlers  *HandlerServer
	reach     string

	mu        sync.Mutex
	redisDown bool // Redis stopped through the gates
	instances []*inproc
	closers   []func()
}

type inproc struct {
	idx    int
	addr   string // kept across restarts when the port is still free
	gate   *gate  // nil without Spec.Gates
	cut    bool
	gen    int
	srv    *wxpushd.Server
	cancel context.CancelFunc
	done   chan struct{}
	up     bool
	logs   *logBuffer // without Spec.LogDir
	logf   string     // with Spec.LogDir: the current log file
}

var _ Deployment = (*InProcess)(nil)

// StartInProcess starts the deployment in this process; on error nothing
// is left running.
func StartInProcess(ctx context.Context, spec Spec) (_ *InProcess, err error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	e := &InProcess{spec: spec}
	defer func() {
		if err != nil {
			_ = e.Close(context.Background())
		}
	}()
	if spec.LogDir != "" {
		if err := os.MkdirAll(spec.LogDir, 0o755); err != nil {
			return nil, err
		}
	}
	if err := e.startRedis(ctx); err != nil {
		return nil, err
	}

	// The callback forwarder first: the mock's apps need its URL.
	fwdLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.fwdHTTP = &http.Server{Handler: http.HandlerFunc(e.forwardCallback), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.fwdHTTP.Serve(fwdLn) }()
	ep := Endpoints{Service: "http://" + fwdLn.Addr().String()}
	if spec.Handler != nil {
		if e.handlers, err = ServeHandler(spec.Handler, "127.0.0.1:0"); err != nil {
			return nil, err
		}
		ep.Handlers = "http://" + e.handlers.Addr()
		e.reach = "loopback " + ep.Handlers
	}

	var mcfg mockwx.Config
	e.cfg, mcfg = spec.Configure(ep)
	if e.cluster != nil && e.cfg.Partitions == 0 {
		// Two partitions per master: the suites' messages spread over the
		// cluster, and every operation crosses partitions.
		e.cfg.Partitions = 6
	}
	if !e.owned() && e.cfg.KeyPrefix == "" {
		// A Redis the deployment does not own (perhaps a real
		// deployment's, on wxpushd's default prefix): keys of its own,
		// deleted at Close.
		e.cfg.KeyPrefix = privatePrefix(spec.Owner)
	}
	if len(e.cfg.APIKeys) > 0 {
		e.apiKey = e.cfg.APIKeys[0].Reveal()
	}
	var mockLog io.Writer = io.Discard
	if spec.LogDir != "" {
		if mockLog, err = e.createLog("mockwx.log"); err != nil {
			return nil, err
		}
	}
	e.mock, err = mockwx.New(mcfg, mockwx.Options{Seed: spec.MockSeed,
		Logger: logging.New(mockLog, slog.LevelInfo)})
	if err != nil {
		return nil, fmt.Errorf("mockwx: %w", err)
	}
	mockAddr := cmp.Or(spec.MockAddr, "127.0.0.1:0")
	mockLn, err := net.Listen("tcp", mockAddr)
	if err != nil {
		return nil, fmt.Errorf("mockwx: listen on %s: %w", mockAddr, err)
	}
	e.mockHTTP = &http.Server{Handler: e.mock, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.mockHTTP.Serve(mockLn) }()
	e.admin = mockwx.NewClient("http://"+mockLn.Addr().String(), "", nil)

	for i := range spec.Instances {
		in := &inproc{idx: i, addr: "127.0.0.1:0"}
		if i < len(spec.ServiceAddrs) && spec.ServiceAddrs[i] != "" {
			in.addr = spec.ServiceAddrs[i]
		}
		if spec.Gates {
			if in.gate, err = newGate(e.redisURL.Host); err != nil {
				return nil, err
			}
		}
		e.instances = append(e.instances, in)
	}
	for i := range e.instances {
		if err := e.Start(ctx, i); err != nil {
			return nil, fmt.Errorf("start instance %d: %w", i, err)
		}
	}
	return e, nil
}

// startRedis starts (or names) the Redis of spec.Redis.
func (e *InProcess) startRedis(ctx context.Context) error {
	raw := e.spec.Redis
	switch raw {
	case RedisCluster:
		if e.spec.Gates {
			return errors.New("harness: a Redis Cluster's client dials every node CLUSTER SLOTS names, so no gate can stand in front of it: start it without Spec.Gates")
		}
		dir := ""
		if e.spec.LogDir != "" {
			dir = filepath.Join(e.spec.LogDir, "redis-cluster")
		}
		c, err := rediscluster.Start(ctx, rediscluster.Options{Masters: 3, Replicas: 1, Persistent: true,
			Dir: dir, Ports: e.spec.ClusterPorts})
		if err != nil {
			return err
		}
		e.cluster = c
		u, err := url.Parse(c.URL())
		if err != nil {
			return err
		}
		e.redisURL, e.redisDesc = u, "Redis Cluster (3 masters + 3 replicas, private redis-server processes, append-only files)"
		return nil
	case RedisAuto, RedisProcess:
		dir := filepath.Join(e.spec.LogDir, "redis")
		if e.spec.LogDir == "" {
			d, err := os.MkdirTemp("", "wxpush-redis-")
			if err != nil {
				return err
			}
			e.tmpDir, dir = d, d
		}
		var err error
		if e.proc, err = StartRedisServer(ctx, dir); err == nil {
			raw, e.redisDesc = e.proc.URL(), "redis-server (private process, append-only file)"
			break
		}
		if e.spec.Redis == RedisProcess {
			return err
		}
		fallthrough
	case RedisMini:
		e.mini = miniredis.NewMiniRedis()
		if err := e.mini.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("miniredis: %w", err)
		}
		raw, e.redisDesc = "redis://"+e.mini.Addr()+"/0", "miniredis (in-process)"
	default:
		e.redisDesc = "external"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !strings.HasPrefix(u.Scheme, "redis") {
		return fmt.Errorf("redis %q: not a redis:// URL (use redis://host:6379/0)", redisurl.Redacted(raw))
	}
	e.redisURL = u
	return nil
}

// owned reports whether the deployment started its Redis.
func (e *InProcess) owned() bool { return e.mini != nil || e.proc != nil || e.cluster != nil }

func (e *InProcess) createLog(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(e.spec.LogDir, name))
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.closers = append(e.closers, func() { _ = f.Close() })
	e.mu.Unlock()
	return f, nil
}

// serviceConfig is instance in's settings: the spec's, with its address,
// Redis (through its gate), the mock and a name unique to this start.
func (e *InProcess) serviceConfig(in *inproc) wxpushd.Config {
	cfg := e.cfg
	cfg.Apps = slices.Clone(cfg.Apps)
	cfg.Addr = in.addr
	u := *e.redisURL
	if in.gate != nil {
		u.Host = in.gate.addr()
	}
	cfg.RedisURL = u.String()
	cfg.WeChatBaseURL = e.admin.BaseURL()
	cfg.Instance = fmt.Sprintf("%s-%d.%d", cmpOr(e.cfg.Instance, e.spec.Owner), in.idx, in.gen)
	return cfg
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Kind is KindInProcess.
func (e *InProcess) Kind() string { return KindInProcess }

// Instances is the number of instances.
func (e *InProcess) Instances() int { return len(e.instances) }

// Mock is the mock's admin client.
func (e *InProcess) Mock() *mockwx.Client { return e.admin }

// MockServer is the mock itself.
func (e *InProcess) MockServer() *mockwx.Server { return e.mock }

// APIKey is the service's first API key.
func (e *InProcess) APIKey() string { return e.apiKey }

// HandlersURL is where the deployment reaches Spec.Handler.
func (e *InProcess) HandlersURL() string {
	if e.handlers == nil {
		return ""
	}
	return "http://" + e.handlers.Addr()
}

// Reach says how the handler is reached.
func (e *InProcess) Reach() string { return e.reach }

// Redis describes the Redis.
func (e *InProcess) Redis() string { return e.redisDesc }

// Partitions is the instances' queue partition count (wxpushd's
// --partitions): Configure's, or 6 on a cluster when it left it 0.
func (e *InProcess) Partitions() int { return max(e.cfg.Partitions, 1) }

// RedisURL is the URL the instances use to reach Redis (it may hold a
// password: redact it before printing).
func (e *InProcess) RedisURL() string { return e.redisURL.String() }

// ServiceURL is instance i's base URL.
func (e *InProcess) ServiceURL(i int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.instances) {
		return "http://127.0.0.1:1"
	}
	return "http://" + e.instances[i].addr
}

// Up reports whether instance i runs.
func (e *InProcess) Up(i int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return i >= 0 && i < len(e.instances) && e.instances[i].up
}

func (e *InProcess) instance(i int) (*inproc, error) {
	if i < 0 || i >= len(e.instances) {
		return nil, ErrInstance(i, len(e.instances))
	}
	return e.instances[i], nil
}

// Start starts instance i (again), on its previous address when that is
// free within 2 s and on a new one otherwise.
func (e *InProcess) Start(ctx context.Context, i int) error {
	in, err := e.instance(i)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if in.up {
		e.mu.Unlock()
		return fmt.Errorf("instance %d is already up", i)
	}
	in.gen++
	cfg := e.serviceConfig(in)
	e.mu.Unlock()
	var ln net.Listener
	for try := 0; ; try++ { // the old socket may linger for a moment
		if ln, err = net.Listen("tcp", in.addr); err == nil {
			break
		}
		if try == 40 {
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return err
			}
			break
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var logw io.Writer
	var logs *logBuffer
	logf := ""
	if e.spec.LogDir != "" {
		name := fmt.Sprintf("wxpushd-%d.%d.log", i, in.gen)
		f, err := e.createLog(name)
		if err != nil {
			_ = ln.Close()
			return err
		}
		logw, logf = f, f.Name()
	} else {
		logs = &logBuffer{}
		logw = logs
	}
	srv, err := wxpushd.New(ctx, cfg, wxpushd.Options{
		Logger:   logging.New(logw, slog.LevelInfo),
		Listener: ln,
	})
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("instance %d: %w", i, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(runCtx)
	}()
	e.mu.Lock()
	in.addr, in.srv, in.cancel, in.done, in.up, in.logs, in.logf = srv.Addr(), srv, cancel, done, true, logs, logf
	e.mu.Unlock()
	return nil
}

func (e *InProcess) takeDown(ctx context.Context, i int, kill bool) error {
	in, err := e.instance(i)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if !in.up {
		e.mu.Unlock()
		return fmt.Errorf("instance %d is not up", i)
	}
	in.up = false
	e.mu.Unlock()
	if kill {
		in.srv.Kill()
	} else {
		in.cancel()
	}
	select {
	case <-in.done:
	case <-ctx.Done():
		return fmt.Errorf("instance %d did not stop: %w", i, ctx.Err())
	}
	in.srv.Close()
	in.cancel()
	return nil
}

// Kill stops instance i as kill -9 would.
func (e *InProcess) Kill(ctx context.Context, i int) error { return e.takeDown(ctx, i, true) }

// Stop stops instance i gracefully.
func (e *InProcess) Stop(ctx context.Context, i int) error { return e.takeDown(ctx, i, false) }

// applyGates opens or closes each instance's gate; e.mu is held.
func (e *InProcess) applyGates() {
	for _, in := range e.instances {
		if in.gate != nil {
			in.gate.setOpen(!e.redisDown && !in.cut)
		}
	}
}

// StopRedis makes Redis unavailable, keeping its data: with gates, every
// gate closes (Redis itself keeps running, as when the network to it
// fails); without, the Redis the deployment owns stops (redis-server gets
// SIGTERM and keeps its append-only file; miniredis keeps its data; every
// node of a Redis Cluster gets SIGTERM and keeps its append-only file).
func (e *InProcess) StopRedis(ctx context.Context) error {
	switch {
	case e.cluster != nil:
		return e.cluster.Stop(ctx)
	case e.spec.Gates:
		e.setRedisDown(true)
	case e.proc != nil:
		e.proc.Stop()
	case e.mini != nil:
		e.mini.Close()
	default:
		return fmt.Errorf("stopping a Redis the deployment does not own needs gates: %w", ErrUnsupported)
	}
	return nil
}

// StartRedis makes Redis available again with its data (a Redis Cluster:
// every node started again, and the cluster whole, each master with its
// replica).
func (e *InProcess) StartRedis(ctx context.Context) error {
	switch {
	case e.cluster != nil:
		return e.cluster.Start(ctx)
	case e.spec.Gates:
		e.setRedisDown(false)
	case e.proc != nil:
		return e.proc.Start(ctx)
	case e.mini != nil:
		return e.mini.Restart()
	default:
		return fmt.Errorf("starting a Redis the deployment does not own needs gates: %w", ErrUnsupported)
	}
	return nil
}

func (e *InProcess) setRedisDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.redisDown = down
	e.applyGates()
}

// FlushRedis deletes everything the service stored: the whole Redis the
// deployment owns, or the keys under the service's private key prefix.
func (e *InProcess) FlushRedis(ctx context.Context) error {
	if e.mini != nil {
		e.mini.FlushAll()
		return nil
	}
	if e.cluster != nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return e.cluster.FlushAll(ctx)
	}
	if e.proc == nil && e.cfg.KeyPrefix == "" {
		return fmt.Errorf("flushing a shared Redis needs a private key prefix: %w", ErrUnsupported)
	}
	return e.withRedis(ctx, func(ctx context.Context, rdb *redis.Client) error {
		if e.proc != nil {
			return rdb.FlushAll(ctx).Err()
		}
		return DeletePrefix(ctx, rdb, e.cfg.KeyPrefix)
	})
}

func (e *InProcess) withRedis(ctx context.Context, f func(context.Context, *redis.Client) error) error {
	opts, err := redis.ParseURL(e.redisURL.String())
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return f(ctx, rdb)
}

// DeletePrefix deletes every key under prefix (a shared Redis is never
// flushed whole).
func DeletePrefix(ctx context.Context, rdb *redis.Client, prefix string) error {
	pattern := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(prefix) + "*"
	iter := rdb.Scan(ctx, 0, pattern, 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := rdb.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return rdb.Del(ctx, batch...).Err()
	}
	return nil
}

func (e *InProcess) setCut(i int, cut bool) error {
	in, err := e.instance(i)
	if err != nil {
		return err
	}
	if e.cluster != nil {
		return fmt.Errorf("cutting one instance from a Redis Cluster: its client learns every node's address from CLUSTER SLOTS and dials them directly, so no gate can cut it: %w", ErrUnsupported)
	}
	if in.gate == nil {
		return fmt.Errorf("cutting an instance from Redis needs gates: %w", ErrUnsupported)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	in.cut = cut
	e.applyGates()
	return nil
}

// CutRedis cuts instance i's gate.
func (e *InProcess) CutRedis(_ context.Context, i int) error { return e.setCut(i, true) }

// RestoreRedis opens instance i's gate again.
func (e *InProcess) RestoreRedis(_ context.Context, i int) error { return e.setCut(i, false) }

// Logs returns the last n lines of instance i's current log.
func (e *InProcess) Logs(_ context.Context, i, n int) string {
	e.mu.Lock()
	var logs *logBuffer
	var file string
	if i >= 0 && i < len(e.instances) {
		logs, file = e.instances[i].logs, e.instances[i].logf
	}
	e.mu.Unlock()
	switch {
	case logs != nil:
		return Tail(logs.String(), n)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return ""
		}
		return Tail(string(b), n)
	}
	return ""
}

// forwardCallback hands a delivery report to an instance that is up, as a
// load balancer in front of the instances would.
func (e *InProcess) forwardCallback(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	var up []string
	for _, in := range e.instances {
		if in.up {
			up = append(up, in.addr)
		}
	}
	e.mu.Unlock()
	if len(up) == 0 {
		http.Error(w, "no instance is up", http.StatusServiceUnavailable)
		return
	}
	target := &url.URL{Scheme: "http", Host: up[e.rr.Add(1)%uint64(len(up))]}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
	proxy.ServeHTTP(w, r)
}

// Close stops everything: the instances gracefully (at most until ctx
// ends), then the gates, the mock, the forwarder, the handler and Redis;
// with a Redis it does not own, it deletes the keys under the service's
// private key prefix.
func (e *InProcess) Close(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, in := range e.instances {
		if e.Up(in.idx) {
			wg.Go(func() { _ = e.Stop(ctx, in.idx) })
		}
	}
	wg.Wait()
	for _, in := range e.instances {
		if in.gate != nil {
			in.gate.close()
		}
	}
	if e.mockHTTP != nil {
		_ = e.mockHTTP.Close()
	}
	if e.mock != nil {
		e.mock.Close()
	}
	if e.fwdHTTP != nil {
		_ = e.fwdHTTP.Close()
	}
	e.handlers.Close()
	var errs []error
	switch {
	case e.mini != nil:
		e.mini.Close()
	case e.proc != nil:
		e.proc.Stop()
	case e.cluster != nil:
		if err := e.cluster.Close(); err != nil {
			errs = append(errs, fmt.Errorf("redis cluster: %w", err))
		}
	case e.redisURL != nil && e.cfg.KeyPrefix != "":
		if err := e.withRedis(ctx, func(ctx context.Context, rdb *redis.Client) error {
			return DeletePrefix(ctx, rdb, e.cfg.KeyPrefix)
		}); err != nil {
			errs = append(errs, fmt.Errorf("deleting keys %s* from %s: %w", e.cfg.KeyPrefix, e.redisURL.Redacted(), err))
		}
	}
	e.mu.Lock()
	closers := e.closers
	e.closers = nil
	e.mu.Unlock()
	for _, c := range closers {
		c()
	}
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
	return errors.Join(errs...)
}

// privatePrefix is a key prefix no other deployment uses, with its own
// hash tag (every key of one deployment in one Cluster slot, as wxpushd
// needs): "<owner>:<hex>:{<hex>}:".
func privatePrefix(owner string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s:%s:{%s}:", owner, tag, tag)
}
