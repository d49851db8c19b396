// Package wxpushd runs the wxpushd push service: the HTTP API in front of
// the Redis queue, the workers that send to WeChat with shared access
// tokens, and their lifecycle. cmd/wxpushd is a thin main around it; tests
// and wxload start it in-process with New and Run.
package wxpushd

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/httpapi"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/internal/token"
	"github.com/wxpush/wxpush/service/internal/webhook"
	"github.com/wxpush/wxpush/service/internal/worker"
)

// Server is one wxpushd instance.
type Server struct {
	cfg  Config
	log  *slog.Logger
	rdb  redis.UniversalClient
	mini *miniredis.Miniredis // the embedded store, when no Redis URL
	// partitionsOK is set once the partition count is confirmed: until
	// then sends are refused (partitionGate).
	partitionsOK atomic.Bool
	store        *store.Store
	tokens       *token.Manager
	worker       *worker.Worker
	reports      *callback.Receiver  // WeChat callbacks: the endpoint and the delivery report processor
	hooks        *webhook.Dispatcher // status webhooks
	events       *webhook.Forwarder  // event webhooks
	metrics      *metrics.Metrics
	epoch        *epochWatch   // the store-reset alarm
	clock        *redisClock   // the workers' clock: this host's, corrected to Redis's
	kick         chan struct{} // a new Redis connection: check the store epoch now
	handler      http.Handler
	ln           net.Listener

	mu     sync.Mutex
	hs     *http.Server       // set while Run serves
	halt   context.CancelFunc // stops the workers without a drain
	killed bool

	closeOnce sync.Once
}

// Options are what a caller passes besides Config.
type Options struct {
	Logger *slog.Logger // nil: JSON logs to stderr at Config.LogLevel
	// HTTPClient calls WeChat; nil: a client with keep-alives.
	HTTPClient *http.Client
	// Listener, when set, is served instead of listening on Config.Addr.
	Listener net.Listener
	// Clock is this host's clock (nil: time.Now); the workers run on it
	// corrected to Redis's clock.
	Clock func() time.Time
	// RedisHooks are added to the Redis client (go-redis hooks): to count
	// or trace every command the instance sends, as make bench does.
	RedisHooks []redis.Hook
}

// New connects to Redis (or starts the embedded store), builds the
// pipeline and listens. Run serves.
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = withDefaults(cfg)
	log := opts.Logger
	if log == nil {
		level, err := logging.ParseLevel(cfg.LogLevel)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		log = logging.New(os.Stderr, level)
	}
	log = log.With("instance", cfg.Instance)
	s := &Server{cfg: cfg, log: log, metrics: metrics.New(), kick: make(chan struct{}, 1)}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	for _, h := range opts.RedisHooks {
		s.rdb.AddHook(h)
	}
	if err := s.build(opts); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.checkPartitions(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.ln = opts.Listener
	if s.ln == nil {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.ln = ln
	}
	return s, nil
}

func withDefaults(c Config) Config {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.WeChatBaseURL == "" {
		c.WeChatBaseURL = wechat.DefaultBaseURL
	}
	if c.TokenMode == "" {
		c.TokenMode = token.ModeStable
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.StoreCheckInterval <= 0 {
		c.StoreCheckInterval = 5 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	c.ReadTimeout = cmp.Or(c.ReadTimeout, DefaultReadTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	if c.KeyPrefix == "" {
		c.KeyPrefix = "wxp:{wxp}:"
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.Instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	return c
}

// connect opens the Redis client named by the URL, or the embedded store.
func (s *Server) connect(ctx context.Context) error {
	if s.cfg.RedisURL == "" {
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			return fmt.Errorf("embedded store: %w", err)
		}
		s.mini = m
		s.log.Warn("NO REDIS CONFIGURED: using an embedded in-process store. Messages are NOT durable and are lost when this process exits. Set WXPUSH_REDIS_URL for production.", "addr", m.Addr())
		s.rdb = redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, OnConnect: s.reconnected})
		return nil
	}
	rdb, err := redisClient(s.cfg.RedisURL, s.reconnected)
	if err != nil {
		return fmt.Errorf("%w: redis URL: %v", ErrUsage, redisurl.HideSecret(err, s.cfg.RedisURL))
	}
	s.rdb = rdb
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		// Not fatal: the API answers 503 and workers back off until Redis answers.
		s.log.Warn("redis does not answer yet; the API answers 503 until it does", "err", err)
		s.log.Info("redis persistence settings not checked: redis does not answer")
		return nil
	}
	checkPersistence(ctx, rdb, s.log)
	return nil
}

// reconnected is the Redis clients' OnConnect hook: a new connection may
// be to a Redis that came back empty, so the store epoch is checked now.
// It never blocks and never calls Redis.
func (s *Server) reconnected(context.Context, *redis.Conn) error {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// checkPartitions checks the partition count against the one Redis
// recorded (store.CheckPartitions): another count is an error that stops
// the start. When Redis does not answer yet, Run checks once it does.
func (s *Server) checkPartitions(ctx context.Context) error {
	err := s.tryPartitions(ctx)
	if err == nil || errors.Is(err, ErrUsage) {
		return err
	}
	s.log.Warn("partition count not checked yet: redis does not answer; checked when it does", "partitions", s.store.Partitions(), "err", err)
	return nil
}

// tryPartitions checks the partition count once (5 s at most): nil once
// it matches (sends are accepted from then on), ErrUsage for another
// count, else Redis's error.
func (s *Server) tryPartitions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := s.store.CheckPartitions(ctx)
	switch {
	case err == nil:
		s.partitionsOK.Store(true)
	case errors.Is(err, store.ErrPartitions):
		err = fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return err
}

// partitionGate is the API's queue: the store, refusing sends (503) until
// the partition count is confirmed, so that an instance started with
// another count while Redis did not answer cannot acknowledge messages
// into partitions the others never read.
type partitionGate struct {
	*store.Store
	ok *atomic.Bool
}

// Enqueue refuses until the count is confirmed, then is the store's.
func (g partitionGate) Enqueue(ctx context.Context, msgs []store.NewMessage) ([]store.EnqueueResult, error) {
	if !g.ok.Load() {
		return nil, fmt.Errorf("%w: the partition count is not checked yet (Redis has not answered since the start)", store.ErrUnavailable)
	}
	return g.Store.Enqueue(ctx, msgs)
}

// awaitPartitions checks the partition count until Redis answers and
// returns the error of another count (nil once it matches, or when ctx
// ends).
func (s *Server) awaitPartitions(ctx context.Context) error {
	for {
		if err := s.tryPartitions(ctx); err == nil || errors.Is(err, ErrUsage) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// redisClient parses standalone, Sentinel (master_name) and Cluster
// (cluster+redis://) URLs. Every client honours context deadlines, so a
// hung connection cannot stall a worker past its bound; onConnect (may be
// nil) is called on every new connection.
func redisClient(u string, onConnect func(context.Context, *redis.Conn) error) (redis.UniversalClient, error) {
	if rest, ok := strings.CutPrefix(u, "cluster+"); ok {
		o, err := redis.ParseClusterURL(rest)
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled, o.OnConnect = true, onConnect
		// go-redis reloads the slot map on a MOVED reply, and otherwise
		// every 60 s: after a master dies, its slots' commands would fail
		// (connection refused, no MOVED) for up to a minute although its
		// replica took over in two seconds. Reloading every second (one
		// CLUSTER SLOTS when there is traffic) bounds that to a second.
		if o.ClusterStateReloadInterval == 0 {
			o.ClusterStateReloadInterval = time.Second
		}
		return redis.NewClusterClient(o), nil
	}
	if strings.Contains(u, "master_name=") {
		o, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled, o.OnConnect = true, onConnect
		return redis.NewFailoverClient(o), nil
	}
	o, err := redis.ParseURL(u)
	if err != nil {
		return nil, err
	}
	o.ContextTimeoutEnabled, o.OnConnect = true, onConnect
	return redis.NewClient(o), nil
}

func (s *Server) build(opts Options) error {
	cfg := s.cfg
	hc := opts.HTTPClient
	if hc == nil {
		// HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply, as in any Go
		// program: a corporate proxy, or mockwx's HTTPS proxy mode with
		// SSL_CERT_FILE naming its CA.
		hc = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}}
	}
	wc, err := wechat.NewClient(cfg.WeChatBaseURL, hc)
	if err != nil {
		return err
	}
	// The apps' settings, parsed once; every package takes the same App.
	list := make([]*apps.App, 0, len(cfg.Apps))
	names := make([]string, 0, len(cfg.Apps))
	events := map[string]store.EventPolicy{}
	for _, ac := range cfg.Apps {
		a, err := ac.build(!cfg.NoFollowerCheck)
		if err != nil {
			return err
		}
		list = append(list, a)
		names = append(names, a.Name)
		if a.StatusWebhook.Enabled() {
			events[a.Name] = store.EventsFinal
			if !a.HasCallback() { // no delivery reports: sent is final
				events[a.Name] = store.EventsFinalOrSent
			}
		}
		if a.HasCallback() && a.CallbackMode == wechat.ModePlain {
			s.log.Warn("app takes plaintext callbacks: their body is not signed, so anyone who captured one callback URL can replay it with another body for the skew window (the replay guard refuses a second body, not the first); set an encoding_aes_key and callback_mode safe", "app", a.Name)
		}
	}
	primeMetrics(s.metrics, list)
	s.store = store.New(s.rdb, store.Options{Prefix: cfg.KeyPrefix, Retention: cfg.Retention, IdempotencyTTL: cfg.IdempotencyTTL, Apps: names, Events: events, Partitions: cfg.Partitions,
		WaitReplicas: cfg.RedisWaitReplicas, WaitTimeout: cfg.RedisWaitTimeout})
	// A reset is shown in /readyz for the idempotency TTL: the time during
	// which repeats of the lost keys are taken as new messages.
	s.clock = &redisClock{local: opts.Clock, rdb: s.rdb, key: cfg.KeyPrefix + "clocks", instance: cfg.Instance, log: s.log, gauge: s.metrics.ClockOffset}
	if s.clock.local == nil {
		s.clock.local = time.Now
	}
	s.epoch = newEpochWatch(s.store, s.log, s.metrics, cfg.StoreCheckInterval, cmp.Or(cfg.IdempotencyTTL, 24*time.Hour), s.kick, s.clock)
	s.tokens, err = token.NewManager(s.rdb, wc, list, token.Options{
		Prefix: cfg.KeyPrefix, Mode: cfg.TokenMode, DailyBudget: cfg.TokenDailyBudget, Logger: s.log, Metrics: s.metrics,
	})
	if err != nil {
		return err
	}
	s.worker, err = worker.New(s.store, s.tokens, wc, worker.Options{
		Consumer: cfg.Instance, Concurrency: cfg.Workers, MaxAttempts: cfg.MaxAttempts,
		BackoffBase: cfg.BackoffBase, BackoffCap: cfg.BackoffCap, SendTimeout: cfg.SendTimeout,
		Visibility: cfg.Visibility, Drain: cfg.ShutdownTimeout / 2, Logger: s.log, Metrics: s.metrics,
		PaceDelay: cfg.PaceDelay, QuotaDelay: cfg.QuotaDelay, AppDelay: cfg.AppDelay, Apps: list,
		DedupWindow: cfg.DedupWindow, Now: s.clock.Now,
	})
	if err != nil {
		return err
	}
	s.hooks, err = webhook.New(webhook.Options{
		Outbox: s.store, Apps: list, Timeout: cfg.WebhookTimeout,
		BackoffBase: cfg.WebhookBackoffBase, BackoffCap: cfg.WebhookBackoffCap, MaxAttempts: cfg.WebhookMaxAttempts,
		Logger: s.log, Metrics: s.metrics,
	})
	if err != nil {
		return err
	}
	s.events, err = webhook.NewForwarder(webhook.ForwarderOptions{
		Inbox: s.store, Apps: list, Consumer: cfg.Instance, Timeout: cfg.WebhookTimeout,
		BackoffBase: cfg.WebhookBackoffBase, BackoffCap: cfg.WebhookBackoffCap, MaxAttempts: cfg.WebhookMaxAttempts,
		Logger: s.log, Metrics: s.metrics,
	})
	if err != nil {
		return err
	}
	s.metrics.RegisterQueue(func() metrics.QueueStats {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := s.store.Stats(ctx, time.Now())
		if err != nil {
			return metrics.QueueStats{}
		}
		return metrics.QueueStats{
			Depth: float64(st.Backlog + st.Delayed + st.Waiting), Pending: float64(st.Pending), Delayed: float64(st.Delayed),
			OldestAgeSeconds: st.OldestAge.Seconds(),
		}
	})
	if cfg.InsecureNoAuth {
		s.log.Warn("API AUTHENTICATION DISABLED (--insecure-no-auth): anyone who can reach this port can send messages")
	}
	s.reports, err = callback.New(callback.Options{
		Store: s.store, Apps: list, Consumer: cfg.Instance, MaxSkew: cfg.CallbackMaxSkew,
		Logger: s.log, Metrics: s.metrics,
		// The skew check on the instances' consensus clock: the world's
		// time as long as most hosts keep it (WeChat's timestamps are), and
		// one clock for all instances, so a host clock behind cannot accept
		// a timestamp the replay guard has forgotten.
		Now: s.clock.Consensus,
	})
	if err != nil {
		return err
	}
	admin := &appAdmin{apps: apps.Index(list), store: s.store, tokens: s.tokens, now: time.Now}
	op := &operator{Store: s.store, admin: admin, names: names, now: time.Now}
	con, err := s.newConsole(op)
	if err != nil {
		return err
	}
	s.handler, err = httpapi.New(httpapi.Options{
		Queue: partitionGate{s.store, &s.partitionsOK}, Apps: names, APIKeys: cfg.APIKeys, InsecureNoAuth: cfg.InsecureNoAuth,
		NewID: func() string { return store.NewID(time.Now()) }, Now: time.Now, Logger: s.log, Metrics: s.metrics,
		Extra: func(r *gin.Engine) {
			s.reports.Register(r)
			if con != nil {
				con.Register(r)
			}
		},
		Limiter: s.store,
		Limits: store.RequestLimits{
			PerKey: store.RequestLimit{PerSecond: cfg.RateLimitPerKey, Burst: cfg.RateBurstPerKey},
			Global: store.RequestLimit{PerSecond: cfg.RateLimitGlobal, Burst: cfg.RateBurstGlobal},
		},
		Admin: admin, Warnings: s.epoch.warnings,
		Operator: op,
	})
	return err
}

// Addr returns the address the API listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the API's base URL on loopback.
func (s *Server) URL() string {
	addr := s.Addr()
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "::" || host == "0.0.0.0" || host == "") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + addr
}

// Handler returns the HTTP API handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Metrics returns the instance's collectors.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// EmbeddedRedis returns the embedded store, or nil when a Redis URL is set.
func (s *Server) EmbeddedRedis() *miniredis.Miniredis { return s.mini }

// Run serves the API (with the WeChat callback endpoint) and runs the
// workers and the delivery report processor until ctx is done, then shuts
// down gracefully within Config.ShutdownTimeout: the listener stops
// accepting, in-flight requests finish, the workers hand back what they
// have not started and let in-flight sends finish.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("wxpushd starting", "addr", s.Addr(), "version", version.Version, "apps", len(s.cfg.Apps),
		"token_mode", s.cfg.TokenMode, "embedded_store", s.mini != nil)
	if err := s.store.EnsureGroup(ctx); err != nil {
		s.log.Warn("cannot create the queue yet; workers retry", "err", err)
	}
	// The workers run on Redis's clock: measure it before they start (the
	// store checks measure it again).
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	if err := s.clock.sync(cctx); err != nil {
		s.log.Warn("clock offset from Redis not measured yet; the workers start on this host's clock", "err", err)
	}
	ccancel()
	hs := s.httpServer()
	bound := newConnBound(httpapi.WrapListener(s.ln), s.connLimit())
	hs.ConnState = bound.connState
	ln := net.Listener(bound)
	serveErr := make(chan error, 1)
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	if s.killed {
		s.mu.Unlock()
		stopWork()
		return ErrKilled
	}
	s.hs, s.halt = hs, stopWork
	s.mu.Unlock()
	go func() { serveErr <- hs.Serve(ln) }()
	// A count Redis could not confirm at start is checked as soon as it
	// answers; until then the API answers 503 to sends (partitionsOK) and
	// nothing reads or writes the partitions; another count stops the
	// service, as it would have at start.
	partErr := make(chan error, 1)
	checked := make(chan struct{}) // closed once the count is confirmed
	if s.partitionsOK.Load() {
		close(checked)
	} else {
		go func() {
			if err := s.awaitPartitions(workCtx); err != nil {
				s.log.Error("stopping: the partition count does not match the store's", "err", err)
				partErr <- err
				return
			}
			if s.partitionsOK.Load() {
				s.log.Info("partition count checked: sends accepted, workers start", "partitions", s.store.Partitions())
				close(checked)
			}
		}()
	}
	// whenChecked runs fn once the count is confirmed; not at all when the
	// service stops first.
	whenChecked := func(fn func()) {
		select {
		case <-checked:
			fn()
		case <-workCtx.Done():
		}
	}
	workDone := make(chan error, 1)
	if s.cfg.NoWorkers {
		s.log.Info("API only (--no-workers): this instance does not send")
		workDone <- nil
	} else {
		go func() {
			var err error
			whenChecked(func() { err = s.worker.Run(workCtx) })
			workDone <- err
		}()
	}
	// Delivery reports are applied by every instance, senders or not: the
	// callbacks an API-only instance records must not wait for another.
	reportsDone := make(chan struct{})
	go func() {
		defer close(reportsDone)
		whenChecked(func() { _ = s.reports.Run(workCtx) })
	}()
	// Every instance watches the store epoch, senders or not.
	epochDone := make(chan struct{})
	go func() {
		defer close(epochDone)
		s.epoch.run(workCtx)
	}()
	// Every instance trims the search indexes (the same work: idempotent).
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		whenChecked(func() { trimIndexes(workCtx, s.store, s.log) })
	}()
	// Status webhooks are delivered by every instance as well.
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		whenChecked(func() { _ = s.hooks.Run(workCtx) })
	}()

	// So are event webhooks.
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		_ = s.events.Run(workCtx)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-partErr:
	case err = <-serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	s.log.Info("wxpushd shutting down", "timeout", s.cfg.ShutdownTimeout)
	// Half the budget for the HTTP side: in-flight requests finish. A
	// connection that never sent a request (a client's spare dial) would
	// hold Shutdown for 5 s, so whatever remains then is closed.
	hctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout/2)
	if serr := hs.Shutdown(hctx); serr != nil {
		s.log.Warn("http shutdown: closing connections that did not finish in time", "err", serr)
		_ = hs.Close()
	}
	cancel()
	// The other half for the workers (their drain is bounded by it); wait
	// for them in any case, so no goroutine outlives Run.
	stopWork()
	select {
	case <-workDone:
	case <-time.After(s.cfg.ShutdownTimeout/2 + 3*time.Second):
		s.log.Warn("workers are slow to stop; waiting for them (unfinished messages will be reclaimed by other instances)")
		<-workDone
	}
	<-reportsDone // bounded: one blocking read plus one batch of short scripts
	<-hooksDone   // bounded by one delivery's timeout
	<-eventsDone  // bounded by one delivery's timeout
	<-epochDone   // bounded by one check's timeout
	<-trimDone    // bounded by one trim's timeout
	s.mu.Lock()
	killed := s.killed
	s.mu.Unlock()
	if killed {
		return ErrKilled
	}
	s.log.Info("wxpushd stopped")
	return err
}

// httpServer returns the server of the API with its bounds against slow
// clients: ReadTimeout cuts off a request whose headers and body do not
// arrive in time (its body read fails, the handler answers 408 and the
// connection is closed), WriteTimeout bounds the whole exchange,
// IdleTimeout closes keep-alive connections nobody uses.
func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: min(readHeaderTimeout, s.cfg.ReadTimeout),
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// readHeaderTimeout bounds reading a request's headers (or ReadTimeout,
// when shorter).
const readHeaderTimeout = 10 * time.Second

// fdReserve is how many file descriptors the connection bound leaves for
// everything else: Redis, WeChat and webhook connections, files.
const fdReserve = 256

// connLimit raises the open file limit to its hard limit where allowed,
// logs it, and returns the bound on connections served at once:
// Config.MaxConns, lowered when the open file limit could not hold that
// many with fdReserve to spare, so that clients beyond it wait in the
// accept queue instead of exhausting the file descriptors.
func (s *Server) connLimit() int {
	limit := s.cfg.MaxConns
	before, soft, hard, err := raiseFDLimit()
	if err != nil {
		s.log.Warn("cannot raise the open file limit", "err", err, "soft", soft, "hard", hard, "max_conns", limit)
		if soft == 0 {
			return limit
		}
	}
	if fit := max(int(min(soft, 1<<30))-fdReserve, int(min(soft, 1<<30))/2); limit > fit {
		s.log.Warn("max-conns lowered to fit the open file limit", "max_conns", fit, "configured", limit, "open_file_limit", soft)
		limit = fit
	}
	s.log.Info("open file limit", "soft", soft, "hard", hard, "raised_from", before, "max_conns", limit)
	return limit
}

// ErrKilled is what Run returns after Kill.
var ErrKilled = errors.New("wxpushd: killed")

// Kill stops the instance the way kill -9 would, as far as anything outside
// the process can tell: Redis is cut off first, so nothing more is written
// or acknowledged; then every connection is dropped and the workers stop
// without handing anything back. Messages the instance held stay pending in
// the queue until another instance reclaims them after the visibility
// timeout. wxload's crash scenarios and the conformance suites use it; Run
// returns soon after. Close still releases what is left.
func (s *Server) Kill() {
	s.mu.Lock()
	s.killed = true
	hs, halt := s.hs, s.halt
	s.mu.Unlock()
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if hs != nil {
		_ = hs.Close()
	} else if s.ln != nil {
		_ = s.ln.Close()
	}
	if halt != nil {
		halt()
	}
	s.log.Warn("wxpushd killed: no drain, no hand-back")
}

// Close releases Redis and the embedded store. Call it after Run returns.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.ln != nil {
			_ = s.ln.Close()
		}
		if s.rdb != nil {
			_ = s.rdb.Close()
		}
		if s.mini != nil {
			s.mini.Close()
		}
	})
}
