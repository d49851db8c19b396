package conformance

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/harness"
)

// newExternal connects to a deployment the suites do not control: only
// the suites that need no control operation and no special settings run
// against it.
func newExternal(t testing.TB, opts Options) Env {
	t.Helper()
	mockURL, key := os.Getenv(EnvMockURL), os.Getenv(EnvAPIKey)
	d, err := harness.ConnectExternal(strings.Split(os.Getenv(EnvServiceURLs), ","), mockURL, os.Getenv(EnvMockToken), key)
	if err != nil || key == "" {
		t.Fatalf("%s=external needs %s, %s and %s", EnvBackend, EnvServiceURLs, EnvMockURL, EnvAPIKey)
	}
	if opts.TokenExpiresIn != 0 || opts.TokenMode != "stable" || opts.RateLimit != 0 || opts.DedupWindow != 0 || opts.ReadTimeout != 0 || opts.InboundPerKey != 0 {
		t.Skipf("external deployment: this suite needs a deployment configured with %+v (token lifetime, token mode, rate limit, dedup window, read timeout, inbound limit); run it in-process or in containers", opts)
	}
	if opts.needsConfiguredService() {
		t.Skipf("external deployment: this suite needs the service configured with the test's own replies, event webhook receiver or probe callback; run it in-process or in containers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	apps, err := d.Mock().Apps(ctx)
	if err != nil || len(apps) == 0 {
		t.Fatalf("mock at %s: apps %v, %v", mockURL, apps, err)
	}
	app := apps[0]
	if mode := string(app.CallbackMode); opts.CallbackMode != "" && (app.CallbackURL == "" || opts.CallbackMode != mode && !(mode == "" && opts.CallbackMode == "plain")) {
		t.Skipf("external deployment: this suite needs callbacks in %s mode; the mock's app pushes them in mode %q to %q", opts.CallbackMode, mode, app.CallbackURL)
	}
	if err := d.Mock().Reset(ctx); err != nil {
		t.Fatalf("mock at %s: reset: %v", mockURL, err)
	}
	return adopt(t, d, app)
}
