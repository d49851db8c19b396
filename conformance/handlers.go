package conformance

import (
	"net/http"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// servesHandlers reports whether opts ask the backend to serve handlers.
func (o Options) servesHandlers() bool {
	return o.EventWebhook != nil || o.ProbeCallback != nil
}

// needsConfiguredService reports whether opts need settings a deployment
// is not started with (replies, an event webhook of the test's).
func (o Options) needsConfiguredService() bool {
	return len(o.Replies) > 0 || o.servesHandlers()
}

// handlersMux serves opts' handlers at their paths; the backend serves it
// where the deployment reaches it (Env.HandlersURL).
func handlersMux(opts Options) http.Handler {
	mux := http.NewServeMux()
	if opts.EventWebhook != nil {
		mux.Handle(PathEventWebhook, opts.EventWebhook)
	}
	if opts.ProbeCallback != nil {
		mux.Handle(PathProbeCallback, opts.ProbeCallback)
	}
	return mux
}

// probeApp is the mock's second app, pushing in safe mode to the test's
// probe callback at base.
func probeApp(base string) mockwx.App {
	app := mockwx.DemoApp()
	app.AppID = ProbeAppID
	app.Secret = "c0f0be00000000000000000000000001"
	app.OriginalID = "gh_c0f0be000001"
	app.CallbackToken = "conformanceprobetoken"
	app.EncodingAESKey = "c0f0be0000000000000000000000000000000000001"
	app.CallbackMode = wechat.ModeSafe
	app.CallbackURL = base + PathProbeCallback
	app.MiniPrograms = nil
	return app
}

// mockApps are the mock's apps: the service's, and the probe app when the
// options ask for it (handlers at base).
func mockApps(opts Options, app mockwx.App, base string) []mockwx.App {
	apps := []mockwx.App{app}
	if opts.ProbeCallback != nil {
		apps = append(apps, probeApp(base))
	}
	return apps
}
