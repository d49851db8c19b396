package loadtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/redisurl"
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

// The values of Options.RedisURL that choose an embedded Redis rather than
// naming one.
const (
	RedisAuto    = harness.RedisAuto    // a private redis-server if installed, else miniredis
	RedisMini    = harness.RedisMini    // always the in-process miniredis
	RedisProcess = harness.RedisProcess // always a private redis-server process
	RedisCluster = harness.RedisCluster // a private Redis Cluster of 3 masters + 3 replicas (redis-server processes)
)

// The values of Options.Stack: where the stack a run starts runs.
const (
	StackEmbedded   = "embedded"   // in this process (the default)
	StackContainers = "containers" // in Docker containers (the wxload binary; needs Docker)
)

// errRemote is what control operations answer in remote mode.
var errRemote = errors.New("not possible against a remote deployment (run without --service to use the embedded stack)")

// deployment is a Stack over a harness deployment: in-process (the
// embedded stack), in containers, or remote.
type deployment struct {
	d    harness.Deployment
	apps map[string]mockwx.App
	mode string
	// partitions is the instances' queue partition count (0: unknown,
	// a remote deployment's).
	partitions int
}

var _ Stack = (*deployment)(nil)

// eventHook is an event webhook: where to forward and the signing secret.
// With handler set, a stack that runs elsewhere (containers) serves it and
// points the apps at it there; url's path is kept.
type eventHook struct {
	url, secret string
	handler     http.Handler
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

// redisChoice is the Redis the embedded stack runs on, as the user chose
// it: url is Options.RedisURL (RedisAuto, RedisMini, RedisProcess,
// RedisCluster or a URL); clusterPorts is Options.ClusterPorts.
type redisChoice struct {
	url          string
	clusterPorts string
}

// startEmbedded starts the whole stack in this process. A redis url of
// RedisAuto ("") starts an embedded Redis (a cluster when the scenario asks
// for one). hook, when set, is the event webhook every app forwards its
// users' pushes to; fixed, when given, fixes addresses and the API key.
func startEmbedded(ctx context.Context, sc scenarios.Scenario, redis redisChoice, logDir string, ledgerData int, hook *eventHook, fixed ...fixedStack) (*deployment, error) {
	var fx fixedStack
	if len(fixed) > 0 {
		fx = fixed[0]
	}
	return startStack(ctx, StackEmbedded, sc, redis, logDir, ledgerData, hook, nil, fx)
}

// redisURL is the URL the embedded stack's instances use ("" for other
// stacks); it may hold a password.
func (s *deployment) redisURL() string {
	if p, ok := s.d.(*harness.InProcess); ok {
		return p.RedisURL()
	}
	return ""
}

// checkStack refuses a scenario's stack and options that cannot go
// together, before anything starts.
func checkStack(sc scenarios.Scenario, opts Options) error {
	cluster := sc.Stack.Redis == scenarios.RedisCluster
	switch {
	case opts.Stack != "" && opts.Stack != StackEmbedded && opts.Stack != StackContainers:
		return fmt.Errorf("%w: stack %q: want %s or %s", ErrUsage, opts.Stack, StackEmbedded, StackContainers)
	case opts.Stack != "" && len(opts.Services) > 0:
		return fmt.Errorf("%w: --stack starts a stack; --service names a running one", ErrUsage)
	case opts.Stack == StackContainers && opts.RedisURL != RedisAuto:
		return fmt.Errorf("%w: --redis applies to the embedded stack; the container stack runs its own Redis", ErrUsage)
	case opts.Stack == StackContainers && cluster:
		return fmt.Errorf("%w: scenario %s: stack.redis: %s runs on a private Redis Cluster, which only the embedded stack starts (the container stack runs one Redis): run it without --stack %s", ErrUsage, sc.Name, scenarios.RedisCluster, StackContainers)
	case cluster && len(opts.Services) == 0 && opts.RedisURL != RedisAuto && opts.RedisURL != RedisCluster:
		return fmt.Errorf("%w: scenario %s: stack.redis: %s runs on a private Redis Cluster, which --redis %s contradicts: leave --redis out (to run it on another Redis, remove stack.redis from a copy of the scenario)", ErrUsage, sc.Name, scenarios.RedisCluster, redisurl.Redacted(opts.RedisURL))
	}
	if _, err := rediscluster.ParsePortRange(opts.ClusterPorts); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUsage, rediscluster.PortsVar, strings.TrimPrefix(err.Error(), "rediscluster: "))
	}
	return nil
}

// embeddedRedis is the Redis of harness.Spec for the embedded stack: the
// cluster when the scenario asks for it (checkStack refused any other
// choice of the user's), else the user's.
func embeddedRedis(sc scenarios.Scenario, url string) string {
	if sc.Stack.Redis == scenarios.RedisCluster {
		return RedisCluster
	}
	return url
}

// startStack starts the stack of the given kind (StackEmbedded or
// StackContainers; redisURL applies to the first); logf, when set, gets
// progress lines; fx fixes addresses (embedded stack) and the API key.
func startStack(ctx context.Context, kind string, sc scenarios.Scenario, redis redisChoice, logDir string, ledgerData int, hook *eventHook, logf func(string, ...any), fx fixedStack) (*deployment, error) {
	if err := checkStack(sc, Options{Stack: kind, RedisURL: redis.url, ClusterPorts: redis.clusterPorts}); err != nil {
		return nil, err
	}
	spec, apps := scenarioSpec(sc, ledgerData, hook, kind == StackContainers, fx.APIKey)
	spec.LogDir, spec.Logf = logDir, logf
	spec.ServiceAddrs, spec.MockAddr = fx.ServiceAddrs, fx.MockAddr
	var (
		d   harness.Deployment
		err error
	)
	switch kind {
	case "", StackEmbedded:
		kind = StackEmbedded
		spec.Redis = embeddedRedis(sc, redis.url)
		if spec.Redis == RedisCluster {
			spec.ClusterPorts, _ = rediscluster.ParsePortRange(redis.clusterPorts) // checked above
		}
		var p *harness.InProcess
		if p, err = harness.StartInProcess(ctx, spec); err == nil {
			d = p
		}
	default:
		d, err = harness.Start(ctx, harness.KindContainers, spec)
		if errors.Is(err, harness.ErrNoDocker) {
			err = fmt.Errorf("the container stack needs Docker: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	s := &deployment{d: d, apps: *apps, mode: kind, partitions: max(sc.Stack.Partitions, 1)}
	if p, ok := d.(*harness.InProcess); ok {
		s.partitions = p.Partitions()
	}
	for i, r := range sc.Mock.Rules {
		if _, err := d.Mock().AddFault(ctx, r.Rule); err != nil {
			s.Close()
			return nil, fmt.Errorf("mock.rules[%d]: %w", i, err)
		}
	}
	return s, nil
}

// scenarioSpec is the deployment a scenario describes; the map is filled
// with the mock's apps once the deployment has configured them. served
// makes the deployment serve hook's handler (a stack that does not run on
// this host's loopback).
func scenarioSpec(sc scenarios.Scenario, ledgerData int, hook *eventHook, served bool, apiKey string) (harness.Spec, *map[string]mockwx.App) {
	if apiKey == "" {
		var k [16]byte
		h := sha256.Sum256(fmt.Appendf(nil, "wxload-api-key:%d:%d", sc.Seed, time.Now().UnixNano()))
		copy(k[:], h[:])
		apiKey = "wxl_" + hex.EncodeToString(k[:])
	}
	apps := new(map[string]mockwx.App)
	spec := harness.Spec{Instances: sc.Stack.Instances, MockSeed: sc.Seed, Owner: "wxload"}
	if hook != nil && served && hook.handler != nil {
		spec.Handler = hook.handler
	}
	spec.Configure = func(ep harness.Endpoints) (wxpushd.Config, mockwx.Config) {
		mcfg := mockwx.Config{NoDemoApp: true, Settings: sc.Mock.Settings}
		if mcfg.Settings.LedgerDataCapacity == 0 {
			mcfg.Settings.LedgerDataCapacity = ledgerData
		}
		*apps = map[string]mockwx.App{}
		for i, a := range sc.Mock.Apps {
			ma := a.MockApp(i)
			if ma.TemplateDailyLimit == 0 {
				ma.TemplateDailyLimit = 100_000_000
			}
			if a.CallbackMode != "off" {
				ma.CallbackMode = wechat.Mode(a.CallbackMode)
				ma.CallbackURL = ep.Service + "/wechat/callback/" + a.Name
			}
			mcfg.Apps = append(mcfg.Apps, ma)
			(*apps)[a.Name] = ma
		}
		hookURL := ""
		if hook != nil {
			hookURL = hook.url
			if spec.Handler != nil {
				u, err := url.Parse(hook.url)
				if err == nil {
					hookURL = ep.Handlers + u.Path
				}
			}
		}
		return serviceConfig(sc, *apps, apiKey, hook, hookURL), mcfg
	}
	return spec, apps
}

// serviceConfig is every instance's settings.
func serviceConfig(sc scenarios.Scenario, apps map[string]mockwx.App, apiKey string, hook *eventHook, hookURL string) wxpushd.Config {
	st := sc.Stack
	cfg := wxpushd.Config{
		APIKeys:     []wechat.Secret{wechat.Secret(apiKey)},
		Workers:     st.Workers,
		Partitions:  st.Partitions,
		MaxAttempts: st.MaxAttempts,
		BackoffBase: st.BackoffBase.D(),
		BackoffCap:  st.BackoffCap.D(),
		SendTimeout: st.SendTimeout.D(),
		Visibility:  st.Visibility.D(),
		PaceDelay:   st.PaceDelay.D(),
		QuotaDelay:  st.QuotaDelay.D(),
		Instance:    "wxload",
		LogLevel:    "info",
		// A killed instance's sends are reclaimed after Visibility; a
		// graceful stop at the end of the run should be quick.
		ShutdownTimeout: 5 * time.Second,
	}
	if st.TokenMode == "classic" {
		cfg.TokenMode = "classic"
	}
	for _, a := range sc.Mock.Apps {
		ma := apps[a.Name]
		ac := wxpushd.AppConfig{
			Name: a.Name, AppID: ma.AppID, Secret: wechat.Secret(ma.Secret),
			CallbackToken: wechat.Secret(ma.CallbackToken), EncodingAESKey: wechat.Secret(ma.EncodingAESKey),
			CallbackMode: callbackMode(ma.CallbackMode), RateLimit: a.RateLimit,
		}
		if hook != nil {
			ac.EventWebhookURL, ac.EventWebhookSecret = hookURL, wechat.Secret(hook.secret)
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

// ServiceURLs are the URLs of the instances that are up.
func (s *deployment) ServiceURLs() []string {
	var urls []string
	for i := range s.d.Instances() {
		if s.d.Up(i) {
			urls = append(urls, s.d.ServiceURL(i))
		}
	}
	return urls
}

func (s *deployment) Mock() *mockwx.Client            { return s.d.Mock() }
func (s *deployment) MockApps() map[string]mockwx.App { return s.apps }
func (s *deployment) APIKey() string                  { return s.d.APIKey() }

// Describe names the mode, and the Redis with the queue's partition count
// when it is above 1.
func (s *deployment) Describe() (string, string) {
	if s.partitions > 1 {
		return s.mode, fmt.Sprintf("%s, %d queue partitions", s.d.Redis(), s.partitions)
	}
	return s.mode, s.d.Redis()
}

// KillInstance kills instance i like kill -9.
func (s *deployment) KillInstance(i int) error {
	if s.d.Kind() == harness.KindExternal {
		return errRemote
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.d.Kill(ctx, i)
}

// StartInstance starts instance i again.
func (s *deployment) StartInstance(ctx context.Context, i int) error {
	if s.d.Kind() == harness.KindExternal {
		return errRemote
	}
	return s.d.Start(ctx, i)
}

// RestartRedis stops Redis for down and starts it again with its data.
func (s *deployment) RestartRedis(ctx context.Context, down time.Duration) error {
	if s.d.Kind() == harness.KindExternal {
		return errRemote
	}
	err := s.d.StopRedis(ctx)
	if errors.Is(err, harness.ErrUnsupported) {
		return errors.New("restart_redis needs a Redis the stack runs (run without --redis URL)")
	}
	if err != nil {
		return err
	}
	sleepCtx(ctx, down)
	// Started even when ctx ended meanwhile: the drain and teardown need it.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
	defer cancel()
	return s.d.StartRedis(sctx)
}

// Close tears the stack down.
func (s *deployment) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_ = s.d.Close(ctx)
}

// connectRemote names a running deployment and finds the scenario's apps
// among the mock's.
func connectRemote(ctx context.Context, sc scenarios.Scenario, services []string, mockURL, mockToken, apiKey string) (*deployment, error) {
	d, err := harness.ConnectExternal(services, mockURL, mockToken, apiKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	s := &deployment{d: d, apps: map[string]mockwx.App{}, mode: "remote"}
	apps, err := d.Mock().Apps(ctx)
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
				s.apps[a.Name] = ma
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("mock.apps[%d] (%s): the mock at %s has no such app", i, a.Name, mockURL)
		}
	}
	return s, nil
}

// callbackMode is the mode wxpushd expects an app's pushes in: the mock
// app's (its empty mode is plain).
func callbackMode(m wechat.Mode) wechat.Mode {
	if m == "" {
		return wechat.ModePlain
	}
	return m
}
