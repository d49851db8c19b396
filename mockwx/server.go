package mockwx

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Options are how a Server runs, as opposed to what it serves (Config).
type Options struct {
	// Seed drives every random choice (tokens, msgids, request ids, fault
	// probabilities and latencies, callback nonces): the same seed and the
	// same requests give the same answers.
	Seed int64
	// Now is the clock; nil is time.Now. Tests move it to expire tokens
	// and windows without sleeping.
	Now func() time.Time
	// AdminToken, when set, guards /_mock/ with "Authorization: Bearer".
	AdminToken string
	// Logger receives the mock's logs; nil discards them.
	Logger *slog.Logger
	// CallbackClient makes the TEMPLATESENDJOBFINISH pushes; nil is a
	// default client.
	CallbackClient *http.Client
	// CA signs the certificate of the HTTPS proxy mode (CONNECT for
	// WeChatAPIHosts); nil generates one on first use, which lives as long
	// as the Server. LoadOrCreateCA keeps one across restarts.
	CA *CA
}

// Server is the mock WeChat API and its admin API, as one http.Handler.
// Create it with New and stop it with Close.
type Server struct {
	cfg      Config
	settings Settings
	opts     Options
	now      func() time.Time
	log      *slog.Logger
	mux      *http.ServeMux
	faults   *Engine
	ledger   *Ledger
	pusher   *Pusher // TEMPLATESENDJOBFINISH reports
	events   *Pusher // simulated users' events and messages
	eventLog *eventLog
	closing  chan struct{} // closed by Close: hung connections give up
	closeOne sync.Once
	proxy    proxy // the HTTPS proxy mode, started on first use

	mu      sync.Mutex // guards everything below
	rng     *rand.Rand
	apps    map[string]*appState
	order   []string // appids in config order
	tokens  map[string]*tokenRec
	dedup   *dedupIndex
	msgid   int64
	mints   int
	started time.Time // New or the last Reset: followers by config follow since

	stats serverStats
}

// serverStats are the exact counters behind GET /_mock/stats.
type serverStats struct {
	tokenCalls, stableCalls, sendCalls atomic.Int64
	delivered, deduplicated            atomic.Int64
	faultsFired                        atomic.Int64
	mu                                 sync.Mutex
	byErrcode                          map[int]int64
	injected                           map[string]int64
}

func (s *serverStats) countErrcode(code int) {
	s.mu.Lock()
	s.byErrcode[code]++
	s.mu.Unlock()
}

func (s *serverStats) countInjected(kind string) {
	s.mu.Lock()
	s.injected[kind]++
	s.mu.Unlock()
}

// New validates cfg and returns a ready Server. Its preloaded rules are
// added in order.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		settings: cfg.Settings.withDefaults(),
		opts:     opts,
		now:      opts.Now,
		log:      opts.Logger,
		closing:  make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.faults = NewEngine(opts.Seed, s.now)
	s.ledger = NewLedger(LedgerOptions{Capacity: s.settings.LedgerCapacity, DataCapacity: s.settings.LedgerDataCapacity})
	pushOpts := func(salt uint64) PusherOptions {
		return PusherOptions{
			Client:  opts.CallbackClient,
			Workers: s.settings.CallbackWorkers,
			Timeout: time.Duration(s.settings.CallbackTimeoutMS) * time.Millisecond,
			Retries: s.settings.CallbackRetries,
			Now:     s.now,
			Rand:    newSeededReader(uint64(opts.Seed) ^ salt),
			Logger:  s.log,
		}
	}
	s.pusher = NewPusher(pushOpts(0xca11bac4))
	s.events = NewPusher(pushOpts(0xe7e27e))
	s.eventLog = &eventLog{now: s.now}
	if err := s.initState(); err != nil {
		s.pusher.Close()
		s.events.Close()
		return nil, err
	}
	s.routes()
	return s, nil
}

// initState builds the apps, token tables, counters and preloaded rules
// from the config: what New and POST /_mock/reset start from.
func (s *Server) initState() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rng = rand.New(rand.NewPCG(uint64(s.opts.Seed), 0x6d6f636b7778))
	s.apps = map[string]*appState{}
	s.order = nil
	for _, a := range s.cfg.AllApps() {
		st, err := newAppState(a)
		if err != nil {
			return err
		}
		if st.CallbackToken != "" {
			st.crypter, err = wechat.NewCrypter(wechat.CrypterConfig{
				Token: st.CallbackToken, AppID: st.AppID, EncodingAESKey: st.EncodingAESKey,
				Rand: newSeededReader(uint64(s.opts.Seed) ^ uint64(len(s.order)+1)),
			})
			if err != nil {
				return fmt.Errorf("app %s: %w", st.AppID, err)
			}
		}
		s.apps[st.AppID] = st
		s.order = append(s.order, st.AppID)
	}
	s.tokens = map[string]*tokenRec{}
	s.dedup = newDedupIndex(seconds(s.settings.DedupWindowSeconds))
	s.msgid = 1<<61 + s.rng.Int64N(1<<59)
	s.mints = 0
	s.started = s.now()
	s.stats.tokenCalls.Store(0)
	s.stats.stableCalls.Store(0)
	s.stats.sendCalls.Store(0)
	s.stats.delivered.Store(0)
	s.stats.deduplicated.Store(0)
	s.stats.faultsFired.Store(0)
	s.stats.mu.Lock()
	s.stats.byErrcode = map[int]int64{}
	s.stats.injected = map[string]int64{}
	s.stats.mu.Unlock()

	s.faults.Reset()
	for _, r := range s.cfg.Rules {
		if _, err := s.faults.Add(r); err != nil {
			return err
		}
	}
	return nil
}

// Reset forgets the ledger, faults, counters, tokens and quotas, and
// returns the mock to the state New left it in (preloaded rules included,
// RNG reseeded), so a reset mock replays identically.
func (s *Server) Reset() {
	s.pusher.Reset()
	s.events.Reset()
	s.eventLog.reset()
	s.ledger.Reset()
	if err := s.initState(); err != nil {
		// The config was validated by New; initState cannot fail on it.
		panic(fmt.Sprintf("mockwx: reset: %v", err))
	}
}

// Close stops the callback pusher and releases hung connections. The
// caller closes its own listener (http.Server or httptest.Server).
func (s *Server) Close() {
	s.closeOne.Do(func() {
		close(s.closing)
		s.closeProxy()
		s.pusher.Close()
		s.events.Close()
	})
}

// ServeHTTP implements http.Handler. Besides the WeChat and admin APIs it
// is an HTTPS proxy for WeChatAPIHosts: a CONNECT to one of them is served
// by the same handlers over TLS (see PathCAPEM for the CA to trust);
// CONNECTs elsewhere and plain-HTTP proxy requests are refused.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		s.serveConnect(w, r)
	case r.URL.Scheme != "" || (r.URL.Host != "" && r.TLS == nil):
		s.serveProxyRequest(w, r)
	default:
		s.mux.ServeHTTP(w, r)
	}
}

// Apps returns the apps the mock serves, with their defaults applied.
func (s *Server) Apps() []App {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]App, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.apps[id].App)
	}
	return out
}

// WaitCallbacks blocks until every scheduled delivery report was acked or
// given up, or ctx is done.
func (s *Server) WaitCallbacks(ctx context.Context) error { return s.pusher.Wait(ctx) }

// WaitEvents blocks until every simulated event's push has settled, or ctx
// is done.
func (s *Server) WaitEvents(ctx context.Context) error { return s.events.Wait(ctx) }

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("/cgi-bin/token", s.handleToken)
	m.HandleFunc("/cgi-bin/stable_token", s.handleStableToken)
	m.HandleFunc("/cgi-bin/message/template/send", s.handleTemplateSend)
	m.HandleFunc("/cgi-bin/clear_quota", s.handleClearQuota)
	m.HandleFunc("/cgi-bin/getcallbackip", s.handleCallbackIP)
	m.HandleFunc(PathUserInfo, s.handleUserInfo)
	m.HandleFunc(PathUserGet, s.handleUserGet)
	m.HandleFunc(PathTemplateList, s.handleTemplateList)
	m.HandleFunc(PathCustomSend, s.handleCustomSend)
	m.HandleFunc("/cgi-bin/", s.handleUnknownAPI)

	admin := http.NewServeMux()
	admin.HandleFunc("POST /_mock/reset", s.adminReset)
	admin.HandleFunc("GET /_mock/apps", s.adminApps)
	admin.HandleFunc("GET /_mock/stats", s.adminStats)
	admin.HandleFunc("GET /_mock/messages", s.adminMessages)
	admin.HandleFunc("POST /_mock/faults", s.adminAddFault)
	admin.HandleFunc("GET /_mock/faults", s.adminListFaults)
	admin.HandleFunc("DELETE /_mock/faults", s.adminClearFaults)
	admin.HandleFunc("DELETE /_mock/faults/{id}", s.adminDeleteFault)
	admin.HandleFunc("POST /_mock/tokens/expire", s.adminExpireTokens)
	admin.HandleFunc("POST /_mock/events", s.adminPushEvents)
	admin.HandleFunc("GET /_mock/events", s.adminEvents)
	admin.HandleFunc("GET /_mock/users/{openid}", s.adminUser)
	admin.HandleFunc("/_mock/", func(w http.ResponseWriter, r *http.Request) {
		adminError(w, http.StatusNotFound, "not_found", "no admin route "+r.Method+" "+r.URL.Path, "")
	})
	m.Handle("/_mock/", s.adminAuth(admin))
	m.HandleFunc("GET "+PathCAPEM, s.handleCAPEM) // public: a client needs it first
	m.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.mux = m
}

// writeWeChat answers like WeChat: HTTP 200, JSON, the nonstandard
// "encoding=utf-8" content type, no HTML escaping.
func writeWeChat(w http.ResponseWriter, v any) {
	b, err := wechat.Marshal(v)
	if err != nil {
		http.Error(w, "mockwx: encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

// errResponse builds {"errcode":N,"errmsg":"... rid: ..."}. msg overrides
// the taxonomy's errmsg when non-empty.
func (s *Server) errResponse(code int, msg string) wechat.Response {
	if msg == "" {
		msg = wechat.Lookup(code).ErrMsg
	}
	s.mu.Lock()
	rid := newRID(s.rng)
	s.mu.Unlock()
	s.stats.countErrcode(code)
	return wechat.Response{ErrCode: code, ErrMsg: msg + " rid: " + rid}
}

func (s *Server) handleUnknownAPI(w http.ResponseWriter, r *http.Request) {
	writeWeChat(w, wechat.Response{ErrCode: 48001, ErrMsg: "api unauthorized (mockwx does not implement " + r.URL.Path + ")"})
}

// decodeJSON decodes a WeChat request body; WeChat accepts both escaped and
// raw JSON, as encoding/json does.
func decodeJSON(body []byte, v any) error { return json.Unmarshal(body, v) }
