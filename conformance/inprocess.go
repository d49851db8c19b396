package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// inProcess runs everything in the test process on loopback: mockwx, a
// callback balancer, N wxpushd instances, each reaching Redis through its
// own gate.
type inProcess struct {
	opts     Options
	apiKey   string
	prefix   string // the Redis key prefix, unique to this Env
	redisURL *url.URL
	mini     *miniredis.Miniredis // nil with REDIS_URL
	rdb      *redis.Client        // direct, for FlushRedis
	mock     *mockwx.Server
	mockHTTP *http.Server
	admin    *mockwx.Client
	app      mockwx.App
	cbHTTP   *http.Server
	rr       atomic.Uint64
	handlers *testHandlers // nil: the options gave none

	mu        sync.Mutex
	redisDown bool
	instances []*inproc
}

type inproc struct {
	idx    int
	addr   string // kept across restarts when the port is still free
	gate   *gate
	cut    bool
	gen    int
	srv    *wxpushd.Server
	cancel context.CancelFunc
	done   chan struct{}
	up     bool
	logs   *logBuffer
}

var _ Env = (*inProcess)(nil)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newInProcess(t testing.TB, opts Options) Env {
	t.Helper()
	e := &inProcess{opts: opts, apiKey: "conformance-" + randomHex(12)}
	t.Cleanup(func() { e.close(t) })
	tag := randomHex(6)
	e.prefix = fmt.Sprintf("conformance:%s:{c%s}:", tag, tag)

	raw := os.Getenv(EnvRedisURL)
	if raw == "" {
		e.mini = miniredis.NewMiniRedis()
		if err := e.mini.StartAddr("127.0.0.1:0"); err != nil {
			t.Fatalf("miniredis: %v", err)
		}
		raw = "redis://" + e.mini.Addr() + "/0"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("%s %q: not a redis:// URL", EnvRedisURL, raw)
	}
	e.redisURL = u
	ropts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("%s: %v", EnvRedisURL, err)
	}
	e.rdb = redis.NewClient(ropts)

	// The callback balancer first: the mock's app needs its URL.
	cbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.cbHTTP = &http.Server{Handler: http.HandlerFunc(e.forwardCallback), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.cbHTTP.Serve(cbLn) }()

	if opts.servesHandlers() {
		if e.handlers, err = startHandlers(opts, "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		e.handlers.base = "http://" + e.handlers.ln.Addr().String()
	}

	e.app = mockApp(opts, "http://"+cbLn.Addr().String())
	e.mock, err = mockwx.New(mockwx.Config{NoDemoApp: true, Apps: mockApps(opts, e.app, e.HandlersURL()), Settings: mockSettings(opts)},
		mockwx.Options{Seed: opts.Seed})
	if err != nil {
		t.Fatalf("mockwx: %v", err)
	}
	mockLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.mockHTTP = &http.Server{Handler: e.mock, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.mockHTTP.Serve(mockLn) }()
	e.admin = mockwx.NewClient("http://"+mockLn.Addr().String(), "", nil)

	for i := range opts.Instances {
		g, err := newGate(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		e.instances = append(e.instances, &inproc{idx: i, addr: "127.0.0.1:0", gate: g})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range e.instances {
		if err := e.Start(ctx, i); err != nil {
			t.Fatalf("start instance %d: %v", i, err)
		}
	}
	return e
}

// mockApp is the demo app with the suite's token lifetime and callbacks;
// cbBase is the base URL the service's callback route is reached at.
func mockApp(opts Options, cbBase string) mockwx.App {
	app := mockwx.DemoApp()
	app.TokenExpiresIn = opts.TokenExpiresIn
	app.TemplateDailyLimit = 100_000_000
	app.TokenDailyLimit = 100_000
	app.StableTokenDailyLimit = 100_000
	app.CallbackURL = ""
	if opts.CallbackMode != "" {
		app.CallbackMode = wechat.Mode(opts.CallbackMode)
		app.CallbackURL = cbBase + "/wechat/callback/default"
	}
	return app
}

// mockSettings are the mock-wide settings the suites run with.
func mockSettings(opts Options) mockwx.Settings {
	return mockwx.Settings{CallbackDelayMS: 20, CallbackTimeoutMS: 2000, LedgerDataCapacity: 1000,
		DedupWindowSeconds: int(opts.DedupWindow / time.Second)}
}

func (e *inProcess) serviceConfig(in *inproc) wxpushd.Config {
	u := *e.redisURL
	u.Host = in.gate.addr()
	o := e.opts
	cfg := wxpushd.Config{
		Addr: in.addr, RedisURL: u.String(), KeyPrefix: e.prefix, WeChatBaseURL: e.admin.BaseURL(),
		APIKeys:   []wechat.Secret{wechat.Secret(e.apiKey)},
		TokenMode: "stable",
		Workers:   o.Workers, MaxAttempts: o.MaxAttempts, BackoffBase: backoffBase, BackoffCap: backoffCap,
		SendTimeout: sendTimeout, Visibility: o.Visibility, ShutdownTimeout: shutdownTimeout, StoreCheckInterval: storeCheckEvery,
		PaceDelay: o.PaceDelay, QuotaDelay: o.QuotaDelay, AppDelay: o.AppDelay, DedupWindow: o.DedupWindow,
		Instance: fmt.Sprintf("conformance-%d.%d", in.idx, in.gen),
		Apps: []wxpushd.AppConfig{{
			Name: "default", AppID: e.app.AppID, Secret: wechat.Secret(e.app.Secret), RateLimit: o.RateLimit,
		}},
	}
	if o.TokenMode == "classic" {
		cfg.TokenMode = "classic"
	}
	if o.ReadTimeout > 0 {
		cfg.ReadTimeout, cfg.WriteTimeout = o.ReadTimeout, 2*o.ReadTimeout
	}
	cfg.RateLimitPerKey, cfg.RateBurstPerKey = o.InboundPerKey, o.InboundBurst
	if o.CallbackMode != "" {
		cfg.Apps[0].CallbackToken = wechat.Secret(e.app.CallbackToken)
		cfg.Apps[0].EncodingAESKey = wechat.Secret(e.app.EncodingAESKey)
		cfg.Apps[0].CallbackMode = wechat.Mode(o.CallbackMode)
	}
	cfg.WebhookTimeout, cfg.WebhookBackoffBase, cfg.WebhookBackoffCap = webhookTimeout, webhookBackoffBase, webhookBackoffCap
	if o.EventWebhook != nil {
		cfg.Apps[0].EventWebhookURL = e.HandlersURL() + PathEventWebhook
		cfg.Apps[0].EventWebhookSecret = wechat.Secret(o.EventWebhookSecret)
	}
	if r := repliesJSON(o); r != "" {
		// The field's type is internal to the service: filled as
		// WXPUSH_REPLIES is.
		if err := json.Unmarshal([]byte(r), &cfg.Apps[0].Replies); err != nil {
			panic(err)
		}
	}
	return cfg
}

func (e *inProcess) Backend() string { return "inprocess" }
func (e *inProcess) Instances() int  { return len(e.instances) }
func (e *inProcess) Mock() *mockwx.Client {
	return e.admin
}
func (e *inProcess) App() mockwx.App { return e.app }
func (e *inProcess) APIKey() string  { return e.apiKey }

func (e *inProcess) HandlersURL() string {
	if e.handlers == nil {
		return ""
	}
	return e.handlers.base
}

func (e *inProcess) Reach() string {
	if e.handlers == nil {
		return ""
	}
	return "loopback " + e.handlers.base
}

func (e *inProcess) ServiceURL(i int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.instances) {
		return "http://127.0.0.1:1"
	}
	return "http://" + e.instances[i].addr
}

func (e *inProcess) instance(i int) (*inproc, error) {
	if i < 0 || i >= len(e.instances) {
		return nil, errInstance(i, len(e.instances))
	}
	return e.instances[i], nil
}

func (e *inProcess) Start(ctx context.Context, i int) error {
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
	for try := 0; ; try++ { // the old port, so the URL stays the same
		ln, err = net.Listen("tcp", in.addr)
		if err == nil {
			break
		}
		if try == 20 {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs := &logBuffer{}
	srv, err := wxpushd.New(ctx, cfg, wxpushd.Options{
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Listener: ln,
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(runCtx)
	}()
	e.mu.Lock()
	in.addr, in.srv, in.cancel, in.done, in.up, in.logs = srv.Addr(), srv, cancel, done, true, logs
	e.mu.Unlock()
	return nil
}

func (e *inProcess) takeDown(ctx context.Context, i int, kill bool) error {
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

func (e *inProcess) Kill(ctx context.Context, i int) error { return e.takeDown(ctx, i, true) }
func (e *inProcess) Stop(ctx context.Context, i int) error { return e.takeDown(ctx, i, false) }

// applyGates opens or closes each instance's gate from the Redis state.
func (e *inProcess) applyGates() {
	for _, in := range e.instances {
		in.gate.setOpen(!e.redisDown && !in.cut)
	}
}

func (e *inProcess) StopRedis(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.redisDown = true
	e.applyGates()
	return nil
}

func (e *inProcess) StartRedis(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.redisDown = false
	e.applyGates()
	return nil
}

func (e *inProcess) FlushRedis(ctx context.Context) error {
	if e.mini != nil {
		e.mini.FlushAll()
		return nil
	}
	return deletePrefix(ctx, e.rdb, e.prefix)
}

// deletePrefix deletes every key under prefix (a shared Redis is never
// flushed whole).
func deletePrefix(ctx context.Context, rdb *redis.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
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

func (e *inProcess) setCut(i int, cut bool) error {
	in, err := e.instance(i)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	in.cut = cut
	e.applyGates()
	return nil
}

func (e *inProcess) CutRedis(_ context.Context, i int) error     { return e.setCut(i, true) }
func (e *inProcess) RestoreRedis(_ context.Context, i int) error { return e.setCut(i, false) }

// forwardCallback hands a delivery report to an instance that is up, as a
// load balancer in front of the instances would.
func (e *inProcess) forwardCallback(w http.ResponseWriter, r *http.Request) {
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

func (e *inProcess) close(t testing.TB) {
	var wg sync.WaitGroup
	for _, in := range e.instances {
		e.mu.Lock()
		up := in.up
		e.mu.Unlock()
		if up {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = e.Stop(ctx, in.idx)
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		for _, in := range e.instances {
			if in.logs != nil {
				t.Logf("wxpushd %d (generation %d), last log lines:\n%s", in.idx, in.gen, in.logs.tail(30))
			}
		}
	}
	for _, in := range e.instances {
		in.gate.close()
	}
	if e.mockHTTP != nil {
		_ = e.mockHTTP.Close()
	}
	if e.mock != nil {
		e.mock.Close()
	}
	if e.cbHTTP != nil {
		_ = e.cbHTTP.Close()
	}
	e.handlers.close()
	if e.mini != nil {
		e.mini.Close()
	} else if e.rdb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deletePrefix(ctx, e.rdb, e.prefix); err != nil {
			t.Logf("cleanup: deleting keys %s* from %s: %v", e.prefix, EnvRedisURL, err)
		}
	}
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
}

// logBuffer collects an instance's logs from many goroutines, bounded.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

const logBufferMax = 4 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len()+len(p) > logBufferMax {
		keep := l.b.Bytes()[l.b.Len()/2:]
		nb := append([]byte(nil), keep...)
		l.b.Reset()
		l.b.Write(nb)
	}
	return l.b.Write(p)
}

// tail returns the last n lines.
func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
