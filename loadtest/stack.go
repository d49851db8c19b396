package loadtest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// Stack is what a run attacks: the service instances, the mock, and the
// control operations a timeline uses.
type Stack interface {
	// ServiceURLs are the base URLs of the instances that are up.
	ServiceURLs() []string
	// Mock is the mock's admin client.
	Mock() *mockwx.Client
	// MockApps maps each scenario app name to the mock's app.
	MockApps() map[string]mockwx.App
	// APIKey is the bearer key for the service.
	APIKey() string
	KillInstance(i int) error
	StartInstance(ctx context.Context, i int) error
	RestartRedis(ctx context.Context, down time.Duration) error
	// Describe names the mode and the Redis.
	Describe() (mode, redis string)
	Close()
}

// errRemote is what control operations answer in remote mode.
var errRemote = errors.New("not possible against a remote deployment (run without --service to use the embedded stack)")

// embedded is the in-process stack: Redis (embedded or --redis), mockwx,
// N wxpushd instances on loopback, and a small balancer that forwards the
// mock's delivery callbacks to an instance that is up.
type embedded struct {
	sc       scenarios.Scenario
	logDir   string
	apiKey   string
	redisURL string
	mini     *miniredis.Miniredis // the in-process Redis, if that is the one
	proc     *redisProc           // the private redis-server, if that is the one
	mock     *mockwx.Server
	mockHTTP *http.Server
	mockURL  string
	admin    *mockwx.Client
	apps     map[string]mockwx.App
	cbHTTP   *http.Server
	rr       atomic.Uint64

	hook *eventHook

	mu        sync.Mutex
	instances []*instance
	closers   []func()
}

type instance struct {
	idx     int
	addr    string
	gen     int
	srv     *wxpushd.Server
	cancel  context.CancelFunc
	done    chan struct{}
	up      bool
	logFile *os.File
}

// fixedStack makes the embedded stack predictable for a developer (wxload
// up): fixed listen addresses and a fixed API key. Its zero value is what a
// run uses: loopback ports from :0 and a fresh random key.
type fixedStack struct {
	// ServiceAddrs[i] is instance i's listen address ("" or missing: :0).
	ServiceAddrs []string
	// MockAddr is the mock's listen address ("": :0).
	MockAddr string
	// APIKey is the service's API key ("": a random one).
	APIKey string
}

// startEmbedded starts the whole stack. redisURL "" starts an embedded Redis.
// hook, when set, is the event webhook every app forwards its users' pushes
// to; fixed, when given, fixes addresses and the API key.
func startEmbedded(ctx context.Context, sc scenarios.Scenario, redisURL, logDir string, ledgerData int, hook *eventHook, fixed ...fixedStack) (_ *embedded, err error) {
	e := &embedded{sc: sc, logDir: logDir, redisURL: redisURL, instances: make([]*instance, sc.Stack.Instances), hook: hook}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	var fx fixedStack
	if len(fixed) > 0 {
		fx = fixed[0]
	}
	var k [16]byte
	h := sha256.Sum256(fmt.Appendf(nil, "wxload-api-key:%d:%d", sc.Seed, time.Now().UnixNano()))
	copy(k[:], h[:])
	e.apiKey = "wxl_" + hex.EncodeToString(k[:])
	if fx.APIKey != "" {
		e.apiKey = fx.APIKey
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}

	switch redisURL {
	case RedisAuto, RedisProcess:
		e.proc, err = startRedisProc(ctx, filepath.Join(logDir, "redis"))
		if err == nil {
			e.redisURL = e.proc.url()
			break
		}
		if redisURL == RedisProcess {
			return nil, err
		}
		fallthrough
	case RedisMini:
		e.mini = miniredis.NewMiniRedis()
		if err := e.mini.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		e.redisURL = "redis://" + e.mini.Addr() + "/0"
	}

	// The callback balancer first: the mock's apps need its URL.
	cbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cbURL := "http://" + cbLn.Addr().String()
	e.cbHTTP = &http.Server{Handler: http.HandlerFunc(e.forwardCallback), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.cbHTTP.Serve(cbLn) }()

	cfg := mockwx.Config{NoDemoApp: true, Settings: sc.Mock.Settings}
	if cfg.Settings.LedgerDataCapacity == 0 {
		cfg.Settings.LedgerDataCapacity = ledgerData
	}
	e.apps = map[string]mockwx.App{}
	for i, a := range sc.Mock.Apps {
		ma := a.MockApp(i)
		if ma.TemplateDailyLimit == 0 {
			ma.TemplateDailyLimit = 100_000_000
		}
		if a.CallbackMode != "off" {
			ma.CallbackMode = wechat.Mode(a.CallbackMode)
			ma.CallbackURL = cbURL + "/wechat/callback/" + a.Name
		}
		cfg.Apps = append(cfg.Apps, ma)
		e.apps[a.Name] = ma
	}
	mockLog, err := e.logFile("mockwx.log")
	if err != nil {
		return nil, err
	}
	e.mock, err = mockwx.New(cfg, mockwx.Options{
		Seed:   sc.Seed,
		Logger: slog.New(slog.NewJSONHandler(mockLog, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return nil, fmt.Errorf("mockwx: %w", err)
	}
	for _, r := range sc.Mock.Rules {
		if _, err := e.mock.Faults().Add(r.Rule); err != nil {
			return nil, fmt.Errorf("mock rule: %w", err)
		}
	}
	mockAddr := cmp.Or(fx.MockAddr, "127.0.0.1:0")
	mockLn, err := net.Listen("tcp", mockAddr)
	if err != nil {
		return nil, fmt.Errorf("mockwx: listen on %s: %w", mockAddr, err)
	}
	e.mockURL = "http://" + mockLn.Addr().String()
	e.mockHTTP = &http.Server{Handler: e.mock, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.mockHTTP.Serve(mockLn) }()
	e.admin = mockwx.NewClient(e.mockURL, "", nil)

	for i := range e.instances {
		e.instances[i] = &instance{idx: i, addr: "127.0.0.1:0"}
		if i < len(fx.ServiceAddrs) && fx.ServiceAddrs[i] != "" {
			e.instances[i].addr = fx.ServiceAddrs[i]
		}
		if err := e.StartInstance(ctx, i); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *embedded) logFile(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(e.logDir, name))
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = f.Close() })
	return f, nil
}

func (e *embedded) serviceConfig(in *instance) wxpushd.Config {
	st := e.sc.Stack
	cfg := wxpushd.Config{
		Addr:          in.addr,
		RedisURL:      e.redisURL,
		WeChatBaseURL: e.mockURL,
		APIKeys:       []wechat.Secret{wechat.Secret(e.apiKey)},
		Workers:       st.Workers,
		MaxAttempts:   st.MaxAttempts,
		BackoffBase:   st.BackoffBase.D(),
		BackoffCap:    st.BackoffCap.D(),
		SendTimeout:   st.SendTimeout.D(),
		Visibility:    st.Visibility.D(),
		PaceDelay:     st.PaceDelay.D(),
		QuotaDelay:    st.QuotaDelay.D(),
		Instance:      fmt.Sprintf("wxload-%d.%d", in.idx, in.gen),
		LogLevel:      "info",
		// A killed instance's sends are reclaimed after Visibility; a
		// graceful stop at the end of the run should be quick.
		ShutdownTimeout: 5 * time.Second,
	}
	if st.TokenMode == "classic" {
		cfg.TokenMode = "classic"
	}
	for _, a := range e.sc.Mock.Apps {
		ma := e.apps[a.Name]
		ac := wxpushd.AppConfig{
			Name: a.Name, AppID: ma.AppID, Secret: wechat.Secret(ma.Secret),
			CallbackToken: wechat.Secret(ma.CallbackToken), EncodingAESKey: wechat.Secret(ma.EncodingAESKey),
			CallbackMode: callbackMode(ma.CallbackMode), RateLimit: a.RateLimit,
		}
		if e.hook != nil {
			ac.EventWebhookURL, ac.EventWebhookSecret = e.hook.url, wechat.Secret(e.hook.secret)
		}
		if len(a.Replies) > 0 {
			// wxpushd's rules take the scenario's keys (checked by
			// scenarios.Parse; wxpushd checks them again at start).
			b, _ := json.Marshal(a.Replies)
			_ = json.Unmarshal(b, &ac.Replies)
		}
		cfg.Apps = append(cfg.Apps, ac)
	}
	return cfg
}

// eventHook is an event webhook: where to forward and the signing secret.
type eventHook struct{ url, secret string }

// StartInstance starts instance i (again) on its address.
func (e *embedded) StartInstance(ctx context.Context, i int) error {
	e.mu.Lock()
	in := e.instances[i]
	e.mu.Unlock()
	if in.up {
		return fmt.Errorf("instance %d is already up", i)
	}
	in.gen++
	f, err := e.logFile(fmt.Sprintf("wxpushd-%d.%d.log", i, in.gen))
	if err != nil {
		return err
	}
	var ln net.Listener
	for try := 0; ; try++ { // the old socket may linger for a moment
		ln, err = net.Listen("tcp", in.addr)
		if err == nil || try == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("instance %d: listen on %s: %w", i, in.addr, err)
	}
	srv, err := wxpushd.New(ctx, e.serviceConfig(in), wxpushd.Options{
		Logger:   slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})),
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
	in.addr, in.srv, in.cancel, in.done, in.up, in.logFile = srv.Addr(), srv, cancel, done, true, f
	e.mu.Unlock()
	return nil
}

// KillInstance kills instance i like kill -9.
func (e *embedded) KillInstance(i int) error {
	e.mu.Lock()
	in := e.instances[i]
	if !in.up {
		e.mu.Unlock()
		return fmt.Errorf("instance %d is not up", i)
	}
	in.up = false
	e.mu.Unlock()
	in.srv.Kill()
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("instance %d did not stop after kill", i)
	}
	in.srv.Close()
	in.cancel()
	return nil
}

// RestartRedis stops the embedded Redis for down and starts it again on
// the same address with its data.
func (e *embedded) RestartRedis(ctx context.Context, down time.Duration) error {
	if e.proc != nil {
		return e.proc.restart(ctx, down)
	}
	if e.mini == nil {
		return errors.New("restart_redis needs an embedded Redis (run without --redis URL)")
	}
	e.mini.Close()
	select {
	case <-time.After(down):
	case <-ctx.Done():
	}
	return e.mini.Restart()
}

func (e *embedded) ServiceURLs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var urls []string
	for _, in := range e.instances {
		if in != nil && in.up {
			urls = append(urls, "http://"+in.addr)
		}
	}
	return urls
}

func (e *embedded) Mock() *mockwx.Client            { return e.admin }
func (e *embedded) MockApps() map[string]mockwx.App { return e.apps }
func (e *embedded) APIKey() string                  { return e.apiKey }

func (e *embedded) Describe() (string, string) {
	switch {
	case e.proc != nil:
		return "embedded", "redis-server (private process, append-only file)"
	case e.mini != nil:
		return "embedded", "miniredis (in-process)"
	}
	return "embedded", "external"
}

// forwardCallback hands a delivery callback to an instance that is up, as
// a load balancer in front of the instances would.
func (e *embedded) forwardCallback(w http.ResponseWriter, r *http.Request) {
	urls := e.ServiceURLs()
	if len(urls) == 0 {
		http.Error(w, "no instance is up", http.StatusServiceUnavailable)
		return
	}
	target, err := url.Parse(urls[e.rr.Add(1)%uint64(len(urls))])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = nil
	proxy.ServeHTTP(w, r)
}

// Close stops everything: the instances gracefully, then the mock, the
// balancer and Redis.
func (e *embedded) Close() {
	var wg sync.WaitGroup
	for _, in := range e.instances {
		if in == nil || !in.up {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.cancel()
			<-in.done
			in.srv.Close()
		}()
		in.up = false
	}
	wg.Wait()
	if e.mockHTTP != nil {
		_ = e.mockHTTP.Close()
	}
	if e.mock != nil {
		e.mock.Close()
	}
	if e.cbHTTP != nil {
		_ = e.cbHTTP.Close()
	}
	if e.mini != nil {
		e.mini.Close()
	}
	if e.proc != nil {
		e.proc.stop()
	}
	for _, c := range e.closers {
		c()
	}
}

// remote is a deployment the run does not control.
type remote struct {
	services []string
	admin    *mockwx.Client
	apiKey   string
	apps     map[string]mockwx.App
}

func connectRemote(ctx context.Context, sc scenarios.Scenario, services []string, mockURL, mockToken, apiKey string) (*remote, error) {
	r := &remote{services: services, admin: mockwx.NewClient(mockURL, mockToken, nil), apiKey: apiKey, apps: map[string]mockwx.App{}}
	apps, err := r.admin.Apps(ctx)
	if err != nil {
		return nil, fmt.Errorf("mock at %s: %w", mockURL, err)
	}
	if len(apps) == 0 {
		return nil, fmt.Errorf("mock at %s serves no app", mockURL)
	}
	for i, a := range sc.Mock.Apps {
		var found bool
		for _, ma := range apps {
			if a.AppID != "" && ma.AppID == a.AppID || a.AppID == "" && i < len(apps) && ma.AppID == apps[i].AppID {
				r.apps[a.Name] = ma
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("mock.apps[%d] (%s): the mock at %s has no such app", i, a.Name, mockURL)
		}
	}
	return r, nil
}

func (r *remote) ServiceURLs() []string                             { return r.services }
func (r *remote) Mock() *mockwx.Client                              { return r.admin }
func (r *remote) MockApps() map[string]mockwx.App                   { return r.apps }
func (r *remote) APIKey() string                                    { return r.apiKey }
func (r *remote) KillInstance(int) error                            { return errRemote }
func (r *remote) StartInstance(context.Context, int) error          { return errRemote }
func (r *remote) RestartRedis(context.Context, time.Duration) error { return errRemote }
func (r *remote) Describe() (string, string)                        { return "remote", "the deployment's" }
func (r *remote) Close()                                            {}

// callbackMode is the mode wxpushd expects an app's pushes in: the mock
// app's (its empty mode is plain).
func callbackMode(m wechat.Mode) wechat.Mode {
	if m == "" {
		return wechat.ModePlain
	}
	return m
}
