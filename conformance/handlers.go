package conformance

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// testHandlers serves the handlers of Options (the event webhook receiver
// and the probe app's callback) on a listener of the test process.
type testHandlers struct {
	srv  *http.Server
	ln   net.Listener
	base string // the base URL as the deployment reaches it

	mu        sync.Mutex
	probeFrom string // the remote address of the first reachability probe
	probeAt   time.Time
}

// servesHandlers reports whether opts ask the backend to serve handlers.
func (o Options) servesHandlers() bool {
	return o.EventWebhook != nil || o.ProbeCallback != nil
}

// needsConfiguredService reports whether opts need settings a deployment
// is not started with (replies, an event webhook of the test's).
func (o Options) needsConfiguredService() bool {
	return len(o.Replies) > 0 || o.servesHandlers()
}

// startHandlers listens on addr and serves opts' handlers; base is filled
// in by the caller (it depends on how the deployment reaches addr).
func startHandlers(opts Options, addr string) (*testHandlers, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	h := &testHandlers{ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathHandlersProbe, func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		if h.probeFrom == "" {
			h.probeFrom, h.probeAt = r.RemoteAddr, time.Now()
		}
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	if opts.EventWebhook != nil {
		mux.Handle(PathEventWebhook, opts.EventWebhook)
	}
	if opts.ProbeCallback != nil {
		mux.Handle(PathProbeCallback, opts.ProbeCallback)
	}
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *testHandlers) close() {
	if h != nil {
		_ = h.srv.Close()
	}
}

// repliesJSON is opts' replies as wxpushd reads them (WXPUSH_REPLIES, and
// the replies of an apps file: JSON is YAML).
func repliesJSON(opts Options) string {
	if len(opts.Replies) == 0 {
		return ""
	}
	b, err := json.Marshal(opts.Replies)
	if err != nil {
		panic(err) // strings only
	}
	return string(b)
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
