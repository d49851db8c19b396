package callback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Path is the route of the endpoint; :app is the app's name in wxpushd's
// config.
const Path = "/wechat/callback/:app"

// Defaults of Options.
const (
	DefaultMaxBody       = wechat.MaxCallbackBytes
	DefaultMaxSkew       = 5 * time.Minute
	DefaultRecordTimeout = 2 * time.Second
	DefaultDedupTTL      = time.Hour
	DefaultReclaimAfter  = 30 * time.Second
)

// maxEchoStr bounds the echostr of a URL verification.
const maxEchoStr = 1024

// Results of a callback request: the "result" label of metrics.Callbacks.
const (
	ResultVerified    = "verified"    // URL verification answered
	ResultReport      = "report"      // a new delivery report recorded
	ResultEvent       = "event"       // another push (event or user message) recorded
	ResultDuplicate   = "duplicate"   // a retry of a push already recorded
	ResultForbidden   = "forbidden"   // missing or wrong signature, appid or ToUserName
	ResultDowngrade   = "downgrade"   // an app in safe or compat mode got a push that is not encrypted and signed with msg_signature
	ResultReplayed    = "replayed"    // a signed query seen before, now with another body
	ResultStale       = "stale"       // timestamp outside the window
	ResultTooLarge    = "too_large"   // body over MaxBody
	ResultMalformed   = "malformed"   // bad XML or envelope
	ResultUnavailable = "unavailable" // could not be recorded in time: 503, WeChat retries
	ResultUnknownApp  = "unknown_app" // no such app, or no callback token
)

// unknownApp is the app label of requests for an app that is not
// configured: app names cannot start with "_", so it never collides.
const unknownApp = "_unknown"

// Store is what the endpoint and the processor need from the store.
type Store interface {
	RecordCallback(ctx context.Context, cb store.Callback, ttl, queryTTL time.Duration) (store.Recorded, error)
	RecordPush(ctx context.Context, p store.Push, ttl, queryTTL time.Duration) (store.Recorded, error)
	RecordQuery(ctx context.Context, app, queryID, digest string, ttl time.Duration) (store.Recorded, error)
	EnsureReportsGroup(ctx context.Context) error
	ReadReports(ctx context.Context, consumer string, count int, block time.Duration) ([]store.ReportEntry, error)
	ReclaimReports(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]store.ReportEntry, error)
	ApplyDelivery(ctx context.Context, rep store.DeliveryReport, earlyTTL time.Duration) (store.DeliveryResult, error)
	AckReports(ctx context.Context, streamIDs ...string) error
}

var _ Store = (*store.Store)(nil)

// Options configure a Receiver. Zero values take the defaults.
type Options struct {
	Store Store // required
	// Apps are the configured apps; those with a Crypter (callback token,
	// appid, EncodingAESKeys) have an endpoint. CallbackMode is the mode
	// their pushes must come in: in safe and compat mode a push without
	// encrypt_type=aes, msg_signature and an Encrypt element is refused
	// (ResultDowngrade) and only the decrypted message counts; plain (or
	// empty) also accepts plaintext pushes, whose body no signature
	// covers. Safe and compat need an EncodingAESKey.
	Apps []*apps.App
	// Consumer is this instance's name in the reports' consumer group;
	// required by Run.
	Consumer string
	// MaxBody limits a push's body (default DefaultMaxBody, 64 KiB).
	MaxBody int64
	// MaxSkew is how far a push's timestamp may be from the clock
	// (default DefaultMaxSkew, 5 min).
	MaxSkew time.Duration
	// RecordTimeout bounds the Redis write of a push (default 2 s); past
	// it the answer is 503 and WeChat retries.
	RecordTimeout time.Duration
	// DedupTTL is how long a push's dedup key is kept (default 1 h).
	DedupTTL time.Duration
	// QueryTTL is how long the replay guard remembers a signed query with
	// the digest of its body (default twice MaxSkew plus a minute: as long
	// as its timestamp can pass the skew check).
	QueryTTL time.Duration
	// EarlyTTL is how long a report that arrived before its send was
	// recorded waits (default store.DefaultEarlyTTL).
	EarlyTTL time.Duration
	// Block is how long the processor's read of new reports waits
	// (default 1 s); it bounds how long Run takes to notice ctx is done.
	Block time.Duration
	// ReclaimAfter: reports read by an instance and not acknowledged for
	// this long are taken over (default 30 s).
	ReclaimAfter time.Duration
	Now          func() time.Time // nil: time.Now
	Logger       *slog.Logger     // nil: discard
	Metrics      *metrics.Metrics // nil: a fresh metrics.New()
}

// Receiver is the callback endpoint and the delivery report processor.
// Register adds its routes; Run processes reports. It is safe for
// concurrent use.
type Receiver struct {
	o    Options
	apps map[string]*apps.App // the apps with an endpoint, CallbackMode set

	counters sync.Map // appResult -> prometheus.Counter
}

type appResult struct{ app, result string }

// New checks opts and returns a Receiver.
func New(opts Options) (*Receiver, error) {
	if opts.Store == nil {
		return nil, errors.New("callback: no store")
	}
	r := &Receiver{o: opts, apps: make(map[string]*apps.App, len(opts.Apps))}
	for _, a := range opts.Apps {
		if a == nil || a.Name == "" {
			return nil, errors.New("callback: an app without a name")
		}
		if _, dup := r.apps[a.Name]; dup {
			return nil, fmt.Errorf("callback: app %q is configured twice", a.Name)
		}
		if a.Crypter == nil {
			continue // no endpoint
		}
		switch a.CallbackMode {
		case "":
			c := *a
			c.CallbackMode = wechat.ModePlain
			a = &c
		case wechat.ModePlain:
		case wechat.ModeSafe, wechat.ModeCompat:
			if !a.Crypter.CanEncrypt() {
				return nil, fmt.Errorf("callback: app %q: mode %s needs an EncodingAESKey", a.Name, a.CallbackMode)
			}
		default:
			return nil, fmt.Errorf("callback: app %q: unknown mode %q", a.Name, a.CallbackMode)
		}
		if err := a.Replies.Validate(); err != nil {
			return nil, fmt.Errorf("callback: app %q: %w", a.Name, err)
		}
		r.apps[a.Name] = a
	}
	o := &r.o
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	def(&o.MaxSkew, DefaultMaxSkew)
	def(&o.RecordTimeout, DefaultRecordTimeout)
	def(&o.DedupTTL, DefaultDedupTTL)
	def(&o.QueryTTL, 2*o.MaxSkew+time.Minute)
	def(&o.EarlyTTL, store.DefaultEarlyTTL)
	def(&o.Block, time.Second)
	def(&o.ReclaimAfter, DefaultReclaimAfter)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	return r, nil
}

// Register adds GET and POST Path to routes.
func (r *Receiver) Register(routes gin.IRoutes) {
	routes.GET(Path, r.serve)
	routes.POST(Path, r.serve)
}

func (r *Receiver) serve(c *gin.Context) {
	name := c.Param("app")
	app, ok := r.apps[name]
	if !ok {
		r.count(unknownApp, ResultUnknownApp)
		r.fail(c, http.StatusNotFound, service.CodeNotFound, "no callback is configured for this app")
		return
	}
	if c.Request.Method == http.MethodGet {
		r.verifyURL(c, name, app.Crypter)
		return
	}
	r.receive(c, app)
}

// verifyURL answers a URL verification.
func (r *Receiver) verifyURL(c *gin.Context, app string, crypter *wechat.Crypter) {
	q := c.Request.URL.Query()
	ts, nonce, echo := q.Get(wechat.ParamTimestamp), q.Get(wechat.ParamNonce), q.Get(wechat.ParamEchoStr)
	if len(echo) > maxEchoStr {
		r.reject(c, app, ResultMalformed, errors.New("echostr too long"))
		return
	}
	reply := echo
	if msgSig := q.Get(wechat.ParamMsgSignature); msgSig != "" {
		// Encrypted echostr: msg_signature covers it; a signature, when
		// present too, must hold as well.
		sig := q.Get(wechat.ParamSignature)
		if ts == "" || nonce == "" || echo == "" || !crypter.Verify(msgSig, ts, nonce, echo) || (sig != "" && !crypter.Verify(sig, ts, nonce)) {
			r.reject(c, app, ResultForbidden, wechat.ErrSignature)
			return
		}
		if !r.fresh(ts) {
			r.reject(c, app, ResultStale, errStale)
			return
		}
		plain, err := crypter.Decrypt(echo)
		if err != nil {
			r.reject(c, app, classify(err), err)
			return
		}
		reply = string(plain)
	} else {
		var err error
		if reply, err = crypter.VerifyURL(q); err != nil {
			r.reject(c, app, ResultForbidden, err)
			return
		}
		if !r.fresh(ts) {
			r.reject(c, app, ResultStale, errStale)
			return
		}
	}
	// The signed query of a verification may end up in an access log: the
	// guard remembers it, so it cannot come back as a push with a body.
	ctx, cancel := context.WithTimeout(c.Request.Context(), r.o.RecordTimeout)
	recorded, err := r.o.Store.RecordQuery(ctx, app, queryID(q), verifyDigest, r.o.QueryTTL)
	cancel()
	switch {
	case err != nil:
		r.unavailable(c, app, err)
		return
	case recorded == store.RecordedReplay:
		r.reject(c, app, ResultReplayed, errReplayed)
		return
	}
	r.count(app, ResultVerified)
	r.o.Logger.Info("callback URL verified", "app", app)
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(reply))
}

var errStale = errors.New("timestamp outside the accepted window")

// receive verifies, records and acknowledges one push. The query is
// checked first (URL signature, timestamp, and in safe and compat mode the
// presence of encrypt_type=aes and msg_signature): the body of a push that
// fails them is never read, so a request without a valid signature costs
// no more than its headers.
func (r *Receiver) receive(c *gin.Context, app *apps.App) {
	name := app.Name
	q := c.Request.URL.Query()
	sig, ts, nonce := q.Get(wechat.ParamSignature), q.Get(wechat.ParamTimestamp), q.Get(wechat.ParamNonce)
	switch {
	case sig == "" || ts == "" || nonce == "":
		r.reject(c, name, ResultForbidden, wechat.ErrMissingSigParam)
		return
	case !app.Crypter.Verify(sig, ts, nonce):
		r.reject(c, name, ResultForbidden, wechat.ErrSignature)
		return
	case !r.fresh(ts):
		r.reject(c, name, ResultStale, errStale)
		return
	case app.CallbackMode != wechat.ModePlain && (q.Get(wechat.ParamEncryptType) != wechat.EncryptTypeAES || q.Get(wechat.ParamMsgSignature) == ""):
		r.reject(c, name, ResultDowngrade, errDowngrade)
		return
	}
	if c.Request.ContentLength > r.o.MaxBody {
		r.reject(c, name, ResultTooLarge, fmt.Errorf("content length %d over %d", c.Request.ContentLength, r.o.MaxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, r.o.MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			r.reject(c, name, ResultTooLarge, fmt.Errorf("body over %d bytes", r.o.MaxBody))
			return
		}
		r.reject(c, name, ResultMalformed, fmt.Errorf("reading the body: %w", err))
		return
	}
	msg, err := app.Crypter.OpenCallback(q, body)
	if err != nil {
		result := classify(err)
		if app.CallbackMode != wechat.ModePlain && errors.Is(err, wechat.ErrMissingEncrypt) {
			result = ResultDowngrade // a plaintext body behind an encrypted query
		}
		r.reject(c, name, result, err)
		return
	}
	sum := sha256.Sum256(body)
	bodySum := hex.EncodeToString(sum[:16])
	if msg.MsgType != wechat.MsgTypeEvent || msg.Event != wechat.EventTemplateSendJobFinish {
		r.receivePush(c, app, q, body, bodySum, msg)
		return
	}
	if msg.MsgID <= 0 {
		r.reject(c, name, ResultMalformed, errors.New("TEMPLATESENDJOBFINISH without a MsgID"))
		return
	}
	res := wechat.ParseDeliveryStatus(msg.Status)
	rep := &store.DeliveryReport{
		App: name, MsgID: msg.MsgID, Status: msg.Status, Delivered: res.Delivered, Reason: Reason(res),
		OpenID: msg.FromUserName, ReceivedAt: r.o.Now(),
	}
	cb := store.Callback{
		App: name, DedupKey: msg.DedupKey(), Report: rep,
		QueryID: queryID(q), BodySum: bodySum,
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), r.o.RecordTimeout)
	recorded, err := r.o.Store.RecordCallback(ctx, cb, r.o.DedupTTL, r.o.QueryTTL)
	cancel()
	if err != nil {
		r.unavailable(c, name, err)
		return
	}
	result := ResultReport
	switch recorded {
	case store.RecordedReplay:
		r.reject(c, name, ResultReplayed, errReplayed)
		return
	case store.RecordedDuplicate:
		result = ResultDuplicate
	}
	r.count(name, result)
	r.o.Logger.Debug("delivery report received", "app", name, "msgid", rep.MsgID, "status", rep.Status, "duplicate", recorded == store.RecordedDuplicate)
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte("success"))
}

// receivePush records an event or user message (stored, deduplicated,
// follower state, queued for the app's event webhook) and answers its
// passive reply or "success". A retry gets the same reply: the rules and
// the push are the same.
func (r *Receiver) receivePush(c *gin.Context, app *apps.App, q url.Values, body []byte, bodySum string, msg *wechat.Message) {
	name := app.Name
	now := r.o.Now()
	typ := pushType(msg)
	p := store.Push{
		App: name, DedupKey: msg.DedupKey(), QueryID: queryID(q), BodySum: bodySum, OpenID: msg.FromUserName,
		CreateTime: msg.CreateTime, Type: typ, Follow: follow(msg), Forward: app.EventWebhook.Enabled(), ReceivedAt: now,
	}
	if p.Forward {
		plain, err := plaintext(app.Crypter, q, body)
		if err == nil {
			p.Payload, err = eventPayload(name, msg, plain, store.DeliveryID(name, p.DedupKey), now)
		}
		if err != nil {
			r.reject(c, name, ResultMalformed, err)
			return
		}
	}
	// The reply is sealed before the record, so that a push is never
	// recorded and then answered with an error.
	out, encrypted, hasReply, err := r.reply(app, q, msg)
	if err != nil {
		r.reject(c, name, ResultMalformed, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), r.o.RecordTimeout)
	recorded, err := r.o.Store.RecordPush(ctx, p, r.o.DedupTTL, r.o.QueryTTL)
	cancel()
	if err != nil {
		r.unavailable(c, name, err)
		return
	}
	result, evResult := ResultEvent, EventRecorded
	switch recorded {
	case store.RecordedReplay:
		r.reject(c, name, ResultReplayed, errReplayed)
		return
	case store.RecordedDuplicate:
		result, evResult = ResultDuplicate, EventDuplicate
	}
	r.count(name, result)
	r.o.Metrics.EventsReceived.WithLabelValues(name, TypeLabel(typ), evResult).Inc()
	r.o.Logger.Debug("push received", "app", name, "type", TypeLabel(typ), "result", evResult, "reply", hasReply)
	if !hasReply {
		c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte("success"))
		return
	}
	mode := "plain"
	if encrypted {
		mode = "encrypted"
	}
	r.o.Metrics.Replies.WithLabelValues(name, mode).Inc()
	c.Data(http.StatusOK, "application/xml; charset=utf-8", out)
}

var (
	errDowngrade = errors.New("the app takes encrypted pushes only (encrypt_type=aes with msg_signature)")
	errReplayed  = errors.New("this signed query was recorded before with another body")
)

// queryID identifies a verified query for the replay guard by what the
// URL signature covers, (timestamp, nonce) under the app's token, never by
// how the query is spelled: signatures are compared case-insensitively,
// and encrypt_type and msg_signature can be stripped from a captured
// encrypted push (its URL signature stays valid, and a plain-mode app
// takes plaintext), so keying on either would let an attacker mint new
// keys for one captured query. WeChat's retry of a push repeats it whole;
// a recorded push's query that comes back with another body is a replay.
func queryID(q url.Values) string {
	return q.Get(wechat.ParamTimestamp) + "\n" + q.Get(wechat.ParamNonce)
}

// verifyDigest stands for the body of a URL verification in the replay
// guard: its query can never be re-posted as a push.
const verifyDigest = "url-verification"

// unavailable answers 503 to a request that could not be recorded, so
// that WeChat retries it.
func (r *Receiver) unavailable(c *gin.Context, app string, err error) {
	r.o.Metrics.RedisErrors.WithLabelValues("record_callback").Inc()
	r.count(app, ResultUnavailable)
	r.o.Logger.Warn("callback not recorded; answering 503 so that WeChat retries", "app", app, "err", err)
	r.fail(c, http.StatusServiceUnavailable, service.CodeUnavailable, "the callback could not be recorded; retry later")
}

// Reason maps a delivery result to the reason a failed message carries
// (service.Reason*); it is empty for a delivered one.
func Reason(res wechat.DeliveryResult) string {
	if res.Delivered {
		return ""
	}
	switch res.Reason {
	case wechat.ReasonUserBlock:
		return service.ReasonUserBlock
	case wechat.ReasonSystemFailed:
		return service.ReasonSystemFailed
	case wechat.ReasonFreqLimit:
		return service.ReasonFreqLimit
	}
	return service.ReasonDeliveryFailed
}

// classify maps an error of internal/wechat's callback checks to a result.
func classify(err error) string {
	switch {
	case errors.Is(err, wechat.ErrSignature), errors.Is(err, wechat.ErrMissingSigParam),
		errors.Is(err, wechat.ErrAppIDMismatch), errors.Is(err, wechat.ErrToUserMismatch):
		return ResultForbidden
	}
	return ResultMalformed
}

// fresh reports whether a timestamp (unix seconds) is within MaxSkew of
// the clock.
func (r *Receiver) fresh(ts string) bool {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	now, skew := r.o.Now().Unix(), int64(r.o.MaxSkew/time.Second)
	return n >= now-skew && n <= now+skew
}

// reject answers a push or verification that is refused; nothing was
// written. The log line carries the app, the result and the check that
// failed: never the query, the body or a key.
func (r *Receiver) reject(c *gin.Context, app, result string, err error) {
	r.count(app, result)
	r.o.Logger.Info("callback rejected", "app", app, "result", result, "err", err)
	switch result {
	case ResultForbidden:
		r.fail(c, http.StatusForbidden, service.CodeForbidden, "signature check failed")
	case ResultDowngrade:
		r.fail(c, http.StatusForbidden, service.CodeForbidden, "this app takes encrypted pushes only (encrypt_type=aes with msg_signature)")
	case ResultReplayed:
		r.fail(c, http.StatusForbidden, service.CodeForbidden, "this signed query was already used with another body")
	case ResultStale:
		r.fail(c, http.StatusForbidden, service.CodeForbidden, "timestamp outside the accepted window")
	case ResultTooLarge:
		r.fail(c, http.StatusRequestEntityTooLarge, service.CodePayloadTooLarge, fmt.Sprintf("body over %d bytes", r.o.MaxBody))
	default:
		r.fail(c, http.StatusBadRequest, service.CodeInvalidRequest, "malformed callback")
	}
}

// fail writes an API error and stops the handler chain.
func (r *Receiver) fail(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, service.ErrorResponse{Error: service.Error{Code: code, Message: message}})
}

// count adds one to metrics.Callbacks.
func (r *Receiver) count(app, result string) {
	k := appResult{app, result}
	if v, ok := r.counters.Load(k); ok {
		v.(prometheus.Counter).Inc()
		return
	}
	v, _ := r.counters.LoadOrStore(k, r.o.Metrics.Callbacks.WithLabelValues(app, result))
	v.(prometheus.Counter).Inc()
}
