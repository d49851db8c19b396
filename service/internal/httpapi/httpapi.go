package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/openapi"
)

// Body limits.
const (
	// DefaultMaxBody is the default limit on the body of POST /v1/messages
	// (Options.MaxBody).
	DefaultMaxBody = 64 << 10
	// MaxBatchBody is the limit on the body of POST /v1/messages/batch: up
	// to service.MaxBatch messages of a few KiB each. It does not depend on
	// Options.MaxBody.
	MaxBatchBody = 8 << 20
)

// DefaultStoreTimeout is Options.StoreTimeout's default.
const DefaultStoreTimeout = 3 * time.Second

// readyTimeout bounds the Queue.Ping of GET /readyz.
const readyTimeout = 2 * time.Second

// Queue is what the API needs from the store.
type Queue interface {
	// Enqueue stores and queues msgs, returning one result per message in
	// order. Its error wraps store.ErrUnavailable when Redis is down.
	Enqueue(ctx context.Context, msgs []store.NewMessage) ([]store.EnqueueResult, error)
	// Get returns a message, or an error wrapping store.ErrNotFound.
	Get(ctx context.Context, id string) (*service.Message, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// Limiter takes requests from the inbound rate limits; store.Store is one.
type Limiter interface {
	// AllowRequest takes one request of client (a hash of its API key,
	// nil without authentication) from limits, or refuses it.
	AllowRequest(ctx context.Context, client []byte, limits store.RequestLimits) (store.RequestDecision, error)
}

// Options configure the handler New returns.
type Options struct {
	// Queue stores accepted messages. Required.
	Queue Queue
	// Apps are the configured app names. A request whose "app" is empty
	// resolves to the only app, or to "default" if it is configured; else
	// it is a 400 naming field "app".
	Apps []string
	// APIKeys are the accepted bearer keys of /v1/*. When it is not empty,
	// every /v1 request must carry one of them, whatever InsecureNoAuth says.
	APIKeys []wechat.Secret
	// InsecureNoAuth allows APIKeys to be empty, which leaves /v1/*
	// unauthenticated. Without it, New refuses an empty APIKeys.
	InsecureNoAuth bool
	// NewID returns a fresh message id. Required.
	NewID func() string
	// Now is the clock of AcceptedAt; nil means time.Now.
	Now func() time.Time
	// Logger receives the access log and errors; nil discards them.
	Logger *slog.Logger
	// Metrics receives HTTPRequests, HTTPSeconds, Accepted and Replayed and
	// is served on /metrics; nil means a fresh metrics.New().
	Metrics *metrics.Metrics
	// MaxBody limits the body of POST /v1/messages; zero or less means
	// DefaultMaxBody. The batch route always allows MaxBatchBody.
	MaxBody int64
	// StoreTimeout bounds the durable write of an accepted request; when
	// it passes the answer is 503 (default DefaultStoreTimeout).
	StoreTimeout time.Duration
	// Limiter enforces Limits on every /v1 request, after authentication;
	// nil, or Limits without a limit: no limit. The probes and the Extra
	// routes (WeChat's callbacks) are never limited.
	Limiter Limiter
	// Limits are the inbound rate limits: per API key and global.
	Limits store.RequestLimits
	// Admin serves the /v1/apps routes; nil: they answer 404.
	Admin AppAdmin
	// Operator serves search, dead letters, redrive and the overview; nil:
	// they answer 404.
	Operator Operator
	// Warnings, when set, returns conditions an operator must see that do
	// not make the instance unready (a store reset): GET /readyz lists
	// them in its body under "warnings" and keeps its status code.
	Warnings func() []string
	// Extra, when set, is called with the engine after the API's routes
	// are registered, so the service can add routes (e.g. callbacks) that
	// share the middleware.
	Extra func(r *gin.Engine)
}

// api holds the handler's dependencies.
type api struct {
	queue        Queue
	apps         []string
	keys         [][sha256.Size]byte // SHA-256 of each API key: compared in constant time
	newID        func() string
	now          func() time.Time
	log          *slog.Logger
	metrics      *metrics.Metrics
	obs          *observers
	maxBody      int64
	storeTimeout time.Duration
	admin        AppAdmin
	operator     Operator
	warnings     func() []string
	limiter      Limiter
	limits       store.RequestLimits
	openapi      []byte // the document GET /openapi.json serves
}

// New returns the wxpushd HTTP handler. It fails when opts lack a Queue or
// NewID, when an API key is empty, or when there are no API keys and
// InsecureNoAuth is not set.
func New(opts Options) (http.Handler, error) {
	if opts.Queue == nil {
		return nil, errors.New("httpapi: no queue")
	}
	if opts.NewID == nil {
		return nil, errors.New("httpapi: no id generator")
	}
	if len(opts.APIKeys) == 0 && !opts.InsecureNoAuth {
		return nil, errors.New("httpapi: no API keys (set InsecureNoAuth to run without authentication)")
	}
	a := &api{
		queue:        opts.Queue,
		apps:         append([]string(nil), opts.Apps...),
		newID:        opts.NewID,
		now:          opts.Now,
		log:          opts.Logger,
		metrics:      opts.Metrics,
		maxBody:      opts.MaxBody,
		storeTimeout: cmp.Or(opts.StoreTimeout, DefaultStoreTimeout),
		admin:        opts.Admin,
		operator:     opts.Operator,
		warnings:     opts.Warnings,
		limiter:      opts.Limiter,
		limits:       opts.Limits,
		openapi:      openapi.JSON(),
	}
	for i, k := range opts.APIKeys {
		if k.Reveal() == "" {
			return nil, errors.New("httpapi: API key " + strconv.Itoa(i) + " is empty")
		}
		a.keys = append(a.keys, sha256.Sum256([]byte(k.Reveal())))
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.metrics == nil {
		a.metrics = metrics.New()
	}
	a.obs = newObservers(a.metrics)
	if a.maxBody <= 0 {
		a.maxBody = DefaultMaxBody
	}
	if len(a.keys) == 0 {
		a.log.Warn("API authentication is disabled: /v1 accepts every request")
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false // answer 404 JSON, never a redirect
	r.RedirectFixedPath = false
	r.Use(a.requestID, a.observe, a.recover)
	r.NoRoute(a.noRoute)
	r.NoMethod(a.noMethod)

	r.GET("/healthz", a.healthz)
	r.GET("/readyz", a.readyz)
	r.GET("/metrics", gin.WrapH(a.metrics.Handler()))
	r.GET("/openapi.json", a.openAPI)

	v1 := r.Group("/v1", a.auth)
	if a.limiter != nil && a.limits.Limited() {
		v1.Use(a.rateLimit)
	}
	v1.POST("/messages", a.send)
	v1.POST("/messages/batch", a.batch)
	v1.GET("/messages/:id", a.get)
	if a.operator != nil {
		v1.GET("/messages", a.search)
		v1.POST("/messages/:id/redrive", a.redrive)
		v1.GET("/deadletters", a.deadLetters)
		v1.POST("/deadletters/redrive", a.redriveBulk)
		v1.GET("/overview", a.overview)
	}
	if a.admin != nil {
		v1.GET("/apps", a.listApps)
		v1.GET("/apps/:app", a.appStatus)
		v1.POST("/apps/:app/resume", a.resumeApp)
		v1.GET("/apps/:app/users/:openid", a.userState)
	}

	if opts.Extra != nil {
		opts.Extra(r)
	}
	return r, nil
}

// healthz answers liveness: the process serves HTTP.
func (a *api) healthz(c *gin.Context) {
	a.writeJSON(c, http.StatusOK, map[string]string{"status": "ok"})
}

// openAPI serves the OpenAPI document of the API, without authentication:
// it holds no secret, and clients generate code from it.
func (a *api) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, openapi.ContentType, a.openapi)
}

// readiness is the body of GET /readyz.
type readiness struct {
	Status   string   `json:"status"`             // ready or unavailable
	Warnings []string `json:"warnings,omitempty"` // Options.Warnings
}

// readyz answers readiness: the store is reachable. Warnings (a store
// reset) are listed in the body without changing the answer: every
// instance sees the same reset, and taking them all out of the load
// balancer would not bring the lost data back.
func (a *api) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
	defer cancel()
	body := readiness{Status: "ready"}
	if a.warnings != nil {
		body.Warnings = a.warnings()
	}
	if err := a.queue.Ping(ctx); err != nil {
		a.log.WarnContext(ctx, "not ready: store unreachable", "request_id", requestIDOf(c), "err", err)
		body.Status = "unavailable"
		a.writeJSON(c, http.StatusServiceUnavailable, body)
		return
	}
	a.writeJSON(c, http.StatusOK, body)
}

// noRoute answers every unknown path.
func (a *api) noRoute(c *gin.Context) {
	a.abort(c, http.StatusNotFound, &service.Error{Code: service.CodeNotFound, Message: "no such route"})
}

// noMethod answers a known path with the wrong method (gin sets Allow).
func (a *api) noMethod(c *gin.Context) {
	a.abort(c, http.StatusMethodNotAllowed, &service.Error{Code: service.CodeMethodNotAllowed, Message: "method not allowed; allowed: " + c.Writer.Header().Get("Allow")})
}
