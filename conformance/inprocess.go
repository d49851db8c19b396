package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/service/wxpushd"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newInProcess runs everything in the test process on loopback (package
// harness): mockwx, a callback forwarder, N wxpushd instances, each
// reaching Redis (miniredis, or REDIS_URL with a private key prefix)
// through its own gate; or, with WXPUSH_CONFORMANCE_REDIS=cluster, a
// private Redis Cluster of 3 masters and 3 replicas reached directly (a
// cluster client dials every node, so there are no gates: TestRedis's cut
// skips, saying why).
func newInProcess(t testing.TB, opts Options) Env {
	t.Helper()
	spec, app := deploymentSpec(opts)
	spec.Gates = true
	spec.Redis = harness.RedisMini
	timeout := 30 * time.Second
	switch kind := strings.TrimSpace(os.Getenv(EnvRedis)); kind {
	case "":
		if raw := os.Getenv(EnvRedisURL); raw != "" {
			spec.Redis = raw
			tag := randomHex(6)
			prefix := fmt.Sprintf("conformance:%s:{c%s}:", tag, tag)
			configure := spec.Configure
			spec.Configure = func(ep harness.Endpoints) (wxpushd.Config, mockwx.Config) {
				cfg, mcfg := configure(ep)
				cfg.KeyPrefix = prefix
				return cfg, mcfg
			}
		}
	case "cluster":
		ports, err := rediscluster.ParsePortRange(os.Getenv(EnvClusterPorts))
		if err != nil {
			t.Fatalf("%s: %v", EnvClusterPorts, err)
		}
		spec.Gates, spec.Redis, spec.ClusterPorts = false, harness.RedisCluster, ports
		timeout = 90 * time.Second
	default:
		t.Fatalf("%s=%q: want cluster, or unset", EnvRedis, kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	begin := time.Now()
	d, err := harness.StartInProcess(ctx, spec)
	if err != nil {
		t.Fatalf("in-process deployment: %v", err)
	}
	if spec.Redis == harness.RedisCluster {
		t.Logf("in-process deployment on a %s, started in %s", d.Redis(), time.Since(begin).Round(time.Millisecond))
	}
	return adopt(t, d, *app)
}

// deploymentSpec is the deployment opts describe, for every backend that
// starts one; the mock's app the service sends for is filled in once the
// deployment has configured it.
func deploymentSpec(opts Options) (harness.Spec, *mockwx.App) {
	apiKey := "conformance-" + randomHex(12)
	app := new(mockwx.App)
	spec := harness.Spec{
		Instances: opts.Instances,
		MockSeed:  opts.Seed,
		Owner:     "conformance",
		Configure: func(ep harness.Endpoints) (wxpushd.Config, mockwx.Config) {
			*app = mockApp(opts, ep.Service)
			mcfg := mockwx.Config{NoDemoApp: true, Apps: mockApps(opts, *app, ep.Handlers), Settings: mockSettings(opts)}
			return serviceConfig(opts, *app, apiKey, ep.Handlers), mcfg
		},
	}
	if opts.servesHandlers() {
		spec.Handler = handlersMux(opts)
	}
	return spec, app
}

// mockApp is the demo app with the suite's token lifetime and callbacks;
// service is the base URL the service's callback route is reached at.
func mockApp(opts Options, service string) mockwx.App {
	app := mockwx.DemoApp()
	app.TokenExpiresIn = opts.TokenExpiresIn
	app.TemplateDailyLimit = 100_000_000
	app.TokenDailyLimit = 100_000
	app.StableTokenDailyLimit = 100_000
	app.CallbackURL = ""
	if opts.CallbackMode != "" {
		app.CallbackMode = wechat.Mode(opts.CallbackMode)
		app.CallbackURL = service + "/wechat/callback/default"
	}
	return app
}

// mockSettings are the mock-wide settings the suites run with.
func mockSettings(opts Options) mockwx.Settings {
	return mockwx.Settings{CallbackDelayMS: 20, CallbackTimeoutMS: 2000, LedgerDataCapacity: 1000,
		DedupWindowSeconds: int(opts.DedupWindow / time.Second)}
}

// serviceConfig is every instance's settings; handlers is the base URL of
// the test's handlers as the service reaches them.
func serviceConfig(o Options, app mockwx.App, apiKey, handlers string) wxpushd.Config {
	cfg := wxpushd.Config{
		APIKeys:   []wechat.Secret{wechat.Secret(apiKey)},
		TokenMode: "stable",
		Workers:   o.Workers, MaxAttempts: o.MaxAttempts, BackoffBase: backoffBase, BackoffCap: backoffCap,
		SendTimeout: sendTimeout, Visibility: o.Visibility, ShutdownTimeout: shutdownTimeout, StoreCheckInterval: storeCheckEvery,
		PaceDelay: o.PaceDelay, QuotaDelay: o.QuotaDelay, AppDelay: o.AppDelay, DedupWindow: o.DedupWindow,
		Instance: "conformance", LogLevel: "info",
		Apps: []wxpushd.AppConfig{{
			Name: "default", AppID: app.AppID, Secret: wechat.Secret(app.Secret), RateLimit: o.RateLimit,
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
		cfg.Apps[0].CallbackToken = wechat.Secret(app.CallbackToken)
		cfg.Apps[0].EncodingAESKey = wechat.Secret(app.EncodingAESKey)
		cfg.Apps[0].CallbackMode = wechat.Mode(o.CallbackMode)
	}
	cfg.WebhookTimeout, cfg.WebhookBackoffBase, cfg.WebhookBackoffCap = webhookTimeout, webhookBackoffBase, webhookBackoffCap
	if o.EventWebhook != nil {
		cfg.Apps[0].EventWebhookURL = handlers + PathEventWebhook
		cfg.Apps[0].EventWebhookSecret = wechat.Secret(o.EventWebhookSecret)
	}
	if len(o.Replies) > 0 {
		// The field's type is internal to the service: filled as
		// WXPUSH_REPLIES is.
		b, err := json.Marshal(o.Replies)
		if err == nil {
			err = json.Unmarshal(b, &cfg.Apps[0].Replies)
		}
		if err != nil {
			panic(err) // strings only
		}
	}
	return cfg
}
