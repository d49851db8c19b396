package conformance

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/mockwx"
)

// external is a deployment the suites do not control: only the suites
// that need no control operation and no special settings run against it.
type external struct {
	urls   []string
	admin  *mockwx.Client
	apiKey string
	app    mockwx.App
}

var _ Env = (*external)(nil)

func newExternal(t testing.TB, opts Options) Env {
	t.Helper()
	var urls []string
	for u := range strings.SplitSeq(os.Getenv(EnvServiceURLs), ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			urls = append(urls, u)
		}
	}
	mockURL, key := strings.TrimRight(os.Getenv(EnvMockURL), "/"), os.Getenv(EnvAPIKey)
	if len(urls) == 0 || mockURL == "" || key == "" {
		t.Fatalf("%s=external needs %s, %s and %s", EnvBackend, EnvServiceURLs, EnvMockURL, EnvAPIKey)
	}
	if opts.TokenExpiresIn != 0 || opts.TokenMode != "stable" || opts.RateLimit != 0 || opts.DedupWindow != 0 || opts.ReadTimeout != 0 || opts.InboundPerKey != 0 {
		t.Skipf("external deployment: this suite needs a deployment configured with %+v (token lifetime, token mode, rate limit, dedup window, read timeout, inbound limit); run it in-process or in containers", opts)
	}
	if opts.needsConfiguredService() {
		t.Skipf("external deployment: this suite needs the service configured with the test's own replies, event webhook receiver or probe callback; run it in-process or in containers")
	}
	e := &external{urls: urls, admin: mockwx.NewClient(mockURL, os.Getenv(EnvMockToken), nil), apiKey: key}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	apps, err := e.admin.Apps(ctx)
	if err != nil || len(apps) == 0 {
		t.Fatalf("mock at %s: apps %v, %v", mockURL, apps, err)
	}
	e.app = apps[0]
	if mode := string(e.app.CallbackMode); opts.CallbackMode != "" && (e.app.CallbackURL == "" || opts.CallbackMode != mode && !(mode == "" && opts.CallbackMode == "plain")) {
		t.Skipf("external deployment: this suite needs callbacks in %s mode; the mock's app pushes them in mode %q to %q", opts.CallbackMode, mode, e.app.CallbackURL)
	}
	if err := e.admin.Reset(ctx); err != nil {
		t.Fatalf("mock at %s: reset: %v", mockURL, err)
	}
	return e
}

func (e *external) Backend() string                         { return "external" }
func (e *external) Instances() int                          { return len(e.urls) }
func (e *external) ServiceURL(i int) string                 { return e.urls[i%len(e.urls)] }
func (e *external) Mock() *mockwx.Client                    { return e.admin }
func (e *external) App() mockwx.App                         { return e.app }
func (e *external) APIKey() string                          { return e.apiKey }
func (e *external) HandlersURL() string                     { return "" }
func (e *external) Reach() string                           { return "" }
func (e *external) Kill(context.Context, int) error         { return ErrUnsupported }
func (e *external) Stop(context.Context, int) error         { return ErrUnsupported }
func (e *external) Start(context.Context, int) error        { return ErrUnsupported }
func (e *external) StopRedis(context.Context) error         { return ErrUnsupported }
func (e *external) StartRedis(context.Context) error        { return ErrUnsupported }
func (e *external) FlushRedis(context.Context) error        { return ErrUnsupported }
func (e *external) CutRedis(context.Context, int) error     { return ErrUnsupported }
func (e *external) RestoreRedis(context.Context, int) error { return ErrUnsupported }
