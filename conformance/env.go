package conformance

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/mockwx"
)

// Env is one deployment under test: one or more wxpushd instances sharing
// a Redis, a mockwx standing in for WeChat, and the control operations the
// suites use (harness.Deployment: Kill, Start, StopRedis, CutRedis...).
// Instances are numbered from 0. Every operation is bounded by its
// context; the backends add their own deadline. The backend tears the
// deployment down in t.Cleanup: a suite does not Close it.
type Env interface {
	harness.Deployment
	// Backend names the backend: "inprocess", "containers" or "external".
	Backend() string
	// App is the mock's app the service sends for, under the name "default".
	App() mockwx.App
}

// ErrUnsupported is wrapped by the errors of control operations a backend
// cannot do (every one of them against an external deployment).
var ErrUnsupported = harness.ErrUnsupported

// Options shape the deployment a suite needs. Zero values take the
// defaults shown; an external deployment cannot honour them, and New skips
// a suite whose options it does not match.
type Options struct {
	Instances      int           // wxpushd instances (default 2)
	TokenMode      string        // "stable" (default) or "classic"
	TokenExpiresIn int           // mock token lifetime in seconds (default 7200)
	CallbackMode   string        // delivery reports: "" (none), "plain", "compat" or "safe"
	MaxAttempts    int           // send attempts (default 5)
	Workers        int           // concurrent sends per instance (default 8)
	Visibility     time.Duration // reclaim after (default 5 s)
	PaceDelay      time.Duration // wait after 45011 (default 300 ms)
	QuotaDelay     time.Duration // wait after 45009 (default 300 ms)
	AppDelay       time.Duration // wait after an app-level error (default 300 ms)
	Seed           int64         // the mock's seed (default 1)
	// RateLimit is the app's send rate limit in messages/s across all
	// instances (0: none).
	RateLimit float64
	// DedupWindow is WeChat's client_msg_id dedup window: the mock's
	// dedup_window_seconds (whole seconds) and wxpushd's --dedup-window
	// (0: both at their default, 10 min).
	DedupWindow time.Duration
	// ReadTimeout is the service's bound on reading one request, headers
	// and body (0: wxpushd's default); the write timeout is twice it.
	ReadTimeout time.Duration
	// InboundPerKey is the service's inbound rate limit in requests/s per
	// API key (0: none), with burst InboundBurst (0: one second's worth).
	InboundPerKey float64
	InboundBurst  int

	// Replies are the default app's passive reply rules (wxpushd's
	// replies; WXPUSH_REPLIES in containers); they need CallbackMode.
	Replies []Reply
	// EventWebhook, when set, is served by the backend on a listener of
	// the test process that the service reaches (in containers: the app
	// network's gateway address); its URL becomes the default app's
	// event_webhook_url, signed with EventWebhookSecret (at least 16
	// characters). It needs CallbackMode.
	EventWebhook       http.Handler
	EventWebhookSecret string
	// ProbeCallback, when set, is served the same way and is the callback
	// URL of a second mock app, ProbeAppID (safe mode, its own
	// credentials, listed by Mock().Apps), that the service does not know:
	// a stand-in for another program answering WeChat's pushes.
	ProbeCallback http.Handler
}

// Reply is one passive reply rule, as in wxpushd's replies: On an event
// (optionally with its EventKey) or a Keyword of a text message (Match
// "exact" or "prefix"), answered with Text.
type Reply struct {
	On       string `json:"on,omitempty"`
	EventKey string `json:"event_key,omitempty"`
	Keyword  string `json:"keyword,omitempty"`
	Match    string `json:"match,omitempty"`
	Text     string `json:"text"`
}

// Paths of the test's handlers under HandlersURL.
const (
	PathEventWebhook  = "/event-webhook"
	PathProbeCallback = "/probe-callback"
)

// ProbeAppID is the appid of the mock's second app when
// Options.ProbeCallback is set.
const ProbeAppID = "wxc0f0be0000000001"

// Service settings every backend gives wxpushd, so retries are fast.
const (
	backoffBase     = 20 * time.Millisecond
	backoffCap      = 200 * time.Millisecond
	sendTimeout     = time.Second
	shutdownTimeout = 3 * time.Second
	// storeCheckEvery is how often each instance checks that Redis kept
	// its data (the store-reset alarm).
	storeCheckEvery = 200 * time.Millisecond
	// Webhook deliveries (status and event webhooks): one delivery's
	// timeout and the retry backoff bounds.
	webhookTimeout     = 2 * time.Second
	webhookBackoffBase = 50 * time.Millisecond
	webhookBackoffCap  = 500 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.Instances <= 0 {
		o.Instances = 2
	}
	if o.TokenMode == "" {
		o.TokenMode = "stable"
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Visibility <= 0 {
		o.Visibility = 5 * time.Second
	}
	if o.PaceDelay <= 0 {
		o.PaceDelay = 300 * time.Millisecond
	}
	if o.QuotaDelay <= 0 {
		o.QuotaDelay = 300 * time.Millisecond
	}
	if o.AppDelay <= 0 {
		o.AppDelay = 300 * time.Millisecond
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o
}

// Environment variables that choose and describe the backend.
const (
	EnvBackend      = "WXPUSH_CONFORMANCE"              // "" or inprocess, containers, external
	EnvServiceURLs  = "WXPUSH_CONFORMANCE_SERVICE_URLS" // external: comma-separated wxpushd base URLs
	EnvMockURL      = "WXPUSH_CONFORMANCE_MOCK_URL"     // external: the mock's base URL
	EnvMockToken    = "WXPUSH_CONFORMANCE_MOCK_TOKEN"   // external: MOCKWX_ADMIN_TOKEN, if set
	EnvAPIKey       = "WXPUSH_CONFORMANCE_API_KEY"      // external: a key of WXPUSH_API_KEYS
	EnvRedisImage   = "WXPUSH_REDIS_IMAGE"              // containers: the Redis image (default redis:7-alpine, else wxpush/redis:local)
	EnvRedisURL     = "REDIS_URL"                       // inprocess: a real Redis instead of miniredis
	EnvRedis        = "WXPUSH_CONFORMANCE_REDIS"        // inprocess: "cluster" for a private Redis Cluster (3 masters + 3 replicas; REDIS_URL is then ignored)
	EnvClusterPorts = rediscluster.PortsVar             // inprocess with the cluster: "LO-HI", the nodes' port range (default: free ports)
)

// New starts (or connects to) the deployment a suite runs against, chosen
// by WXPUSH_CONFORMANCE, and registers its teardown with t.Cleanup. It
// skips the test when the backend is unavailable (no Docker, or an
// external deployment that cannot honour opts).
func New(t testing.TB, opts Options) Env {
	t.Helper()
	opts = opts.withDefaults()
	switch b := strings.TrimSpace(os.Getenv(EnvBackend)); b {
	case "", "inprocess":
		return newInProcess(t, opts)
	case "containers":
		return newContainers(t, opts)
	case "external":
		return newExternal(t, opts)
	default:
		t.Fatalf("%s=%q: want inprocess, containers or external", EnvBackend, b)
		return nil
	}
}

// deployed adapts a harness deployment to Env.
type deployed struct {
	harness.Deployment
	app mockwx.App
}

var _ Env = (*deployed)(nil)

func (d *deployed) Backend() string { return d.Kind() }
func (d *deployed) App() mockwx.App { return d.app }

// adopt registers d's teardown with t.Cleanup (the instances' last log
// lines first when the test failed) and returns it as an Env.
func adopt(t testing.TB, d harness.Deployment, app mockwx.App) Env {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			for i := range d.Instances() {
				if logs := d.Logs(ctx, i, 30); logs != "" {
					t.Logf("wxpushd %d (%s), last log lines:\n%s", i, d.Kind(), logs)
				}
			}
		}
		if err := d.Close(ctx); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return &deployed{Deployment: d, app: app}
}

// Control runs a control operation and skips the test when the backend
// cannot do it; any other error fails the test.
func Control(t testing.TB, what string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := op(ctx)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("%s: %v", what, err)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
