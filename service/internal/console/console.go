package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Backend is what the console reads and changes; wxpushd implements it on
// the store and its app admin.
type Backend interface {
	// Overview is how the service is doing now (GET /v1/overview).
	Overview(ctx context.Context) (*service.Overview, error)
	// Search lists messages, newest first; a filter or cursor it cannot
	// use is a *store.QueryError.
	Search(ctx context.Context, q service.MessageQuery) (*service.MessagePage, error)
	// Message returns one message with its history; the error wraps
	// store.ErrNotFound when it is absent.
	Message(ctx context.Context, id string) (*service.Message, error)
	// Redrive puts a failed message back in the queue. Its errors wrap
	// store.ErrNotFound, store.ErrNotFailed, store.ErrForceRequired, or
	// are a *store.QueryError.
	Redrive(ctx context.Context, id string, req service.RedriveRequest, requestID string) (*service.Message, error)
	// ResumeApp ends an app's pause for every instance.
	ResumeApp(ctx context.Context, app string) (*service.AppStatus, error)
}

// Options configure a Console.
type Options struct {
	// Backend serves the pages. Required.
	Backend Backend
	// APIKeys are the keys an operator signs in with (the API's keys).
	APIKeys []wechat.Secret
	// InsecureNoAuth allows APIKeys to be empty: the console is then open
	// to anyone who reaches it (CSRF tokens are still required).
	InsecureNoAuth bool
	// Secret returns the HMAC secret of sessions, CSRF tokens and flash
	// messages, the same on every instance (wxpushd keeps it in Redis).
	// It is called on each request that needs it. Required.
	Secret func(ctx context.Context) ([]byte, error)
	// Logger receives sign-ins, actions and errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock of sessions and charts; nil means time.Now.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts (default DefaultSessionTTL).
	SessionTTL time.Duration
	// RefreshSeconds is the overview's auto-refresh period (JavaScript);
	// 0 means 30, negative turns it off.
	RefreshSeconds int
}

// ContentSecurityPolicy is the policy of every response under /console:
// the console's own stylesheet and script, images from itself or data:
// URLs, forms posting to itself, and nothing else.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Console serves the web console. Build it with New and add its routes
// with Register.
type Console struct {
	backend Backend
	keys    []wechat.Secret
	secret  func(ctx context.Context) ([]byte, error)
	log     *slog.Logger
	now     func() time.Time
	ttl     time.Duration
	refresh int
	pages   map[string]*template.Template
	assets  map[string]asset
	version string // of the assets, in their URLs
	cop     *http.CrossOriginProtection
}

// asset is an embedded file served under /console/assets/.
type asset struct {
	body        []byte
	contentType string
}

//go:embed templates/*.tmpl
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// New returns a console. It fails without a Backend or Secret, with an
// empty API key, or without API keys unless InsecureNoAuth is set.
func New(opts Options) (*Console, error) {
	if opts.Backend == nil {
		return nil, errors.New("console: no backend")
	}
	if opts.Secret == nil {
		return nil, errors.New("console: no secret")
	}
	if len(opts.APIKeys) == 0 && !opts.InsecureNoAuth {
		return nil, errors.New("console: no API keys (set InsecureNoAuth to run the console open)")
	}
	for i, k := range opts.APIKeys {
		if k.Reveal() == "" {
			return nil, errors.New("console: API key " + strconv.Itoa(i) + " is empty")
		}
	}
	con := &Console{
		backend: opts.Backend, keys: append([]wechat.Secret(nil), opts.APIKeys...), secret: opts.Secret,
		log: opts.Logger, now: opts.Now, ttl: opts.SessionTTL, refresh: opts.RefreshSeconds,
		cop: http.NewCrossOriginProtection(),
	}
	if con.log == nil {
		con.log = slog.New(slog.DiscardHandler)
	}
	if con.now == nil {
		con.now = time.Now
	}
	if con.ttl <= 0 {
		con.ttl = DefaultSessionTTL
	}
	switch {
	case con.refresh == 0:
		con.refresh = 30
	case con.refresh < 0:
		con.refresh = 0
	}
	if err := con.loadAssets(); err != nil {
		return nil, err
	}
	if err := con.parseTemplates(); err != nil {
		return nil, err
	}
	return con, nil
}

// loadAssets reads the embedded assets and versions them by content.
func (con *Console) loadAssets() error {
	con.assets = map[string]asset{}
	h := sha256.New()
	for name, ctype := range map[string]string{"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"} {
		b, err := fs.ReadFile(assetFS, "assets/"+name)
		if err != nil {
			return err
		}
		con.assets[name] = asset{body: b, contentType: ctype}
	}
	for _, name := range []string{"console.css", "console.js"} {
		h.Write(con.assets[name].body)
	}
	con.version = hex.EncodeToString(h.Sum(nil)[:6])
	return nil
}

// Register adds the console's routes under /console to r. It also adds
// an engine middleware that gives every /console response, a 404
// included, the console's security headers; it does nothing elsewhere.
func (con *Console) Register(r *gin.Engine) {
	r.Use(con.headers)
	g := r.Group(Path)
	g.GET("/assets/:name", con.asset)
	g.GET("/login", con.loginPage)
	g.POST("/login", con.sameOrigin, con.login)

	in := g.Group("", con.session)
	in.GET("", con.overview)
	in.GET("/", func(c *gin.Context) { c.Redirect(http.StatusSeeOther, Path) })
	in.GET("/messages", con.search)
	in.GET("/messages/:id", con.message)
	in.GET("/deadletters", con.deadLetters)

	act := in.Group("", con.sameOrigin, con.csrf)
	act.POST("/logout", con.logout)
	act.POST("/messages/:id/redrive", con.redrive)
	act.POST("/apps/:app/resume", con.resume)
}

// headers sets the security headers of every response under /console:
// the CSP, no sniffing, no referrer, no framing, and no caching (assets
// override the last).
func (con *Console) headers(c *gin.Context) {
	if p := c.Request.URL.Path; p == Path || strings.HasPrefix(p, Path+"/") {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
	}
	c.Next()
}

// asset serves an embedded stylesheet or script.
func (con *Console) asset(c *gin.Context) {
	a, ok := con.assets[c.Param("name")]
	if !ok {
		con.errorPage(c, http.StatusNotFound, "No such file.")
		return
	}
	c.Header("Cache-Control", "public, max-age=86400")
	c.Data(http.StatusOK, a.contentType, a.body)
}

// Keys of the gin context.
const (
	ctxSecret  = "console.secret"
	ctxSession = "console.session"
	ctxFlash   = "console.flash"
	ctxReqID   = "console.request_id" // when the API's middleware set none
)

// loadSecret fetches the HMAC secret into the context, or answers 503.
func (con *Console) loadSecret(c *gin.Context) ([]byte, bool) {
	if v, ok := c.Get(ctxSecret); ok {
		return v.([]byte), true
	}
	secret, err := con.secret(c.Request.Context())
	if err != nil || len(secret) < 16 {
		con.log.WarnContext(c.Request.Context(), "console: no session secret", "request_id", requestID(c), "err", err)
		con.errorPage(c, http.StatusServiceUnavailable, "The store is unavailable; try again in a moment.")
		return nil, false
	}
	c.Set(ctxSecret, secret)
	return secret, true
}

// session lets requests with a valid session cookie through. Without one
// a GET is sent to the sign-in page and anything else is refused; when
// the console is open, an anonymous session is made instead.
func (con *Console) session(c *gin.Context) {
	secret, ok := con.loadSecret(c)
	if !ok {
		return
	}
	now := con.now()
	if ck, err := c.Cookie(CookieName); err == nil && verifySession(secret, con.keys, ck, now) {
		c.Set(ctxSession, ck)
		con.takeFlash(c, secret)
		c.Next()
		return
	}
	if len(con.keys) == 0 {
		v, exp := newSession(secret, openFingerprint, now, con.ttl)
		setCookie(c, CookieName, v, exp, now)
		c.Set(ctxSession, v)
		c.Next()
		return
	}
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		con.errorPage(c, http.StatusForbidden, "Your session has ended: sign in again.")
		return
	}
	c.Redirect(http.StatusSeeOther, Path+"/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
	c.Abort()
}

// sameOrigin refuses a POST that a browser says comes from another site
// (Sec-Fetch-Site, or an Origin that is not this host).
func (con *Console) sameOrigin(c *gin.Context) {
	if err := con.cop.Check(c.Request); err != nil {
		con.log.InfoContext(c.Request.Context(), "console: cross-origin request refused", "request_id", requestID(c), "path", c.FullPath())
		con.errorPage(c, http.StatusForbidden, "Cross-site request refused.")
		return
	}
	c.Next()
}

// csrf refuses a POST whose form lacks the session's CSRF token.
func (con *Console) csrf(c *gin.Context) {
	secret, _ := con.loadSecret(c) // loaded by session
	if !validCSRF(secret, c.GetString(ctxSession), c.PostForm("csrf")) {
		con.log.InfoContext(c.Request.Context(), "console: request without a valid CSRF token refused", "request_id", requestID(c), "path", c.FullPath())
		con.errorPage(c, http.StatusForbidden, "The form has expired or did not come from this console: reload the page and try again.")
		return
	}
	c.Next()
}

// takeFlash moves the flash cookie, when there is one, into the context
// and deletes it.
func (con *Console) takeFlash(c *gin.Context, secret []byte) {
	v, err := c.Cookie(FlashCookieName)
	if err != nil {
		return
	}
	setCookie(c, FlashCookieName, "", time.Time{}, con.now())
	if f, ok := decodeFlash(secret, v); ok {
		c.Set(ctxFlash, f)
	}
}

// redirectWithFlash answers a POST: a 303 to target, with f shown there.
func (con *Console) redirectWithFlash(c *gin.Context, target string, f flash) {
	if secret, ok := c.Get(ctxSecret); ok {
		now := con.now()
		setCookie(c, FlashCookieName, encodeFlash(secret.([]byte), f), now.Add(time.Minute), now)
	}
	c.Redirect(http.StatusSeeOther, target)
}

// localTarget returns target when it is a path under /console of this
// site, else fallback: redirects never leave the console.
func localTarget(target, fallback string) string {
	if target != Path && !strings.HasPrefix(target, Path+"/") && !strings.HasPrefix(target, Path+"?") {
		return fallback
	}
	if strings.ContainsAny(target, "\\\r\n") || strings.Contains(target, "//") || strings.Contains(target, "/..") {
		return fallback
	}
	return target
}

// requestID returns the request's id (set by the API's middleware), or a
// new one.
func requestID(c *gin.Context) string {
	if id := c.Writer.Header().Get(service.HeaderRequestID); id != "" {
		return id
	}
	if id := c.GetString(ctxReqID); id != "" {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	c.Set(ctxReqID, id)
	return id
}

// view is what every page template gets.
type view struct {
	Title    string
	Nav      string // the active navigation entry
	SignedIn bool   // show the navigation and sign-out
	Open     bool   // the console runs without sign-in
	CSRF     string
	Flash    *flash
	Refresh  int // seconds; 0: no auto-refresh
	Version  string
	Data     any
}

// render writes the page through a buffer, so a template error becomes a
// clean 500.
func (con *Console) render(c *gin.Context, status int, page string, v view) {
	v.Version = con.version
	v.Open = len(con.keys) == 0
	if s := c.GetString(ctxSession); s != "" {
		v.SignedIn = true
		if secret, ok := c.Get(ctxSecret); ok {
			v.CSRF = csrfToken(secret.([]byte), s)
		}
	}
	if f, ok := c.Get(ctxFlash); ok {
		ff := f.(flash)
		v.Flash = &ff
	}
	var buf bytes.Buffer
	if err := con.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		con.log.ErrorContext(c.Request.Context(), "console: rendering a page", "request_id", requestID(c), "page", page, "err", err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("internal error\n"))
		c.Abort()
		return
	}
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// errorPage answers status with a page that says msg.
func (con *Console) errorPage(c *gin.Context, status int, msg string) {
	con.render(c, status, "error", view{Title: http.StatusText(status), Data: msg})
	c.Abort()
}

// fail answers a backend error: 404 for a missing message, 503 when the
// store is down, else a logged 500 that shows no detail.
func (con *Console) fail(c *gin.Context, op string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		con.errorPage(c, http.StatusNotFound, "No such message (it never existed, or is past its retention).")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		con.log.WarnContext(c.Request.Context(), "console: store unavailable", "request_id", requestID(c), "op", op, "err", err)
		con.errorPage(c, http.StatusServiceUnavailable, "The store is unavailable; try again in a moment.")
	default:
		con.log.ErrorContext(c.Request.Context(), "console: backend error", "request_id", requestID(c), "op", op, "err", err)
		con.errorPage(c, http.StatusInternalServerError, "Internal error (request "+requestID(c)+").")
	}
}
