package console

import (
	"context"
	"errors"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

const testKey = "console-test-key-0123456789abcdef"

var t0 = time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)

// harness is a console on a gin engine with a fake backend and a clock
// the test moves.
type harness struct {
	t      *testing.T
	engine *gin.Engine
	fake   *fakeBackend
	logs   *syncbuf.Buffer
	secret []byte
	mu     sync.Mutex
	now    time.Time
}

func newHarness(t *testing.T, keys []wechat.Secret, secret []byte) *harness {
	t.Helper()
	h := &harness{t: t, fake: seeded(), logs: &syncbuf.Buffer{}, secret: secret, now: t0}
	con, err := New(Options{
		Backend: h.fake, APIKeys: keys, InsecureNoAuth: len(keys) == 0,
		Secret: func(context.Context) ([]byte, error) { return h.secret, nil },
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    h.clock,
	})
	require.NoError(t, err)
	gin.SetMode(gin.ReleaseMode)
	h.engine = gin.New()
	h.engine.NoRoute(func(c *gin.Context) { c.JSON(http.StatusNotFound, gin.H{"error": "no such route"}) })
	con.Register(h.engine)
	return h
}

func testSecret() []byte { return []byte("0123456789abcdef0123456789abcdef") }

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

// req is one request to the console.
type req struct {
	method, path string
	form         url.Values
	cookies      []*http.Cookie
	header       map[string]string
}

func (h *harness) do(r req) *http.Response {
	h.t.Helper()
	var body *strings.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	} else {
		body = strings.NewReader("")
	}
	hr := httptest.NewRequestWithContext(h.t.Context(), cmpOr(r.method, http.MethodGet), "http://console.test"+r.path, body)
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.engine.ServeHTTP(rec, hr)
	return rec.Result()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	_, err := ioCopy(&b, resp)
	require.NoError(t, err)
	return b.String()
}

// signIn posts the key to the sign-in form and returns the session cookie.
func (h *harness) signIn(key string) *http.Cookie {
	h.t.Helper()
	resp := h.do(req{method: http.MethodPost, path: "/console/login", form: url.Values{"api_key": {key}, "next": {"/console"}}})
	require.Equal(h.t, http.StatusSeeOther, resp.StatusCode)
	ck := cookieNamed(resp, CookieName)
	require.NotNil(h.t, ck, "a session cookie")
	return ck
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// page GETs path with the session and returns the body and its CSRF token.
func (h *harness) page(path string, ck *http.Cookie) (int, string, string) {
	h.t.Helper()
	resp := h.do(req{path: path, cookies: []*http.Cookie{ck}})
	body := bodyOf(h.t, resp)
	token := ""
	if m := csrfRE.FindStringSubmatch(body); m != nil {
		token = html.UnescapeString(m[1])
	}
	return resp.StatusCode, body, token
}

// seeded is a backend with an overview and messages of every kind,
// hostile values included.
func seeded() *fakeBackend {
	f := &fakeBackend{}
	for i := range 24 * 60 {
		m := service.Counts{Minute: t0.Add(time.Duration(i-24*60+1) * time.Minute)}
		if i%10 == 0 {
			m.Accepted, m.Sent, m.Delivered = 12, 11, 9
			m.Failed = map[string]int64{service.ReasonAttemptsExhausted: 1}
		}
		if i%97 == 0 {
			m.Failed = map[string]int64{service.ReasonUnconfirmed: 2, service.ReasonPermanentErrcode: 1}
		}
		f.overview.Minutes = append(f.overview.Minutes, m)
	}
	until := t0.Add(3 * time.Hour)
	f.overview.Queue = service.QueueState{Backlog: 7, Pending: 2, Delayed: 1, Waiting: 4, OldestAgeSeconds: 12.5}
	f.overview.Apps = []service.AppStatus{
		{App: "shop", AppID: "wx0000000000000001", State: service.AppActive},
		{App: "news", AppID: "wx0000000000000002", State: service.AppActive, RateLimit: 5, RateBurst: 1},
		{App: "promo", AppID: "wx0000000000000003", State: service.AppPaused, Waiting: 4,
			Pause: &service.AppPause{Reason: service.PauseDailyQuota, ErrCode: 45009, ErrMsg: "reach max api daily quota limit", Since: t0, Until: &until}},
	}
	code := 40037
	lat := 12.5
	f.msgs = []*service.Message{
		{ID: "MSGEXHAUSTED", App: "shop", ToUser: "oUser-1", TemplateID: "order_shipped", Status: service.StatusFailed,
			Reason: service.ReasonAttemptsExhausted, Attempts: 4, LastError: &service.SendError{ErrCode: -1, ErrMsg: "system error"},
			CreatedAt: t0.Add(-time.Minute), UpdatedAt: t0, RequestID: "req-exhausted", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			History: []service.HistoryEvent{
				{At: t0.Add(-time.Minute), Type: service.HistoryAccepted, RequestID: "req-exhausted"},
				{At: t0.Add(-50 * time.Second), Type: service.HistoryAttempt, Attempt: 1, Instance: "i-1", Outcome: service.OutcomeRetry, ErrCode: &code, Error: "system error", LatencyMS: &lat},
				{At: t0, Type: service.HistoryAttempt, Attempt: 4, Instance: "i-2", Outcome: service.OutcomeFailed, ErrCode: &code, Error: "system error", Reason: service.ReasonAttemptsExhausted},
			}},
		{ID: "MSGUNCONFIRMED", App: "shop", ToUser: "oUser-2", TemplateID: "order_shipped", Status: service.StatusFailed,
			Reason: service.ReasonUnconfirmed, Attempts: 2, CreatedAt: t0.Add(-2 * time.Minute), UpdatedAt: t0},
		{ID: "MSGSENT", App: "news", ToUser: "oUser-1", TemplateID: "daily", Status: service.StatusSent, Attempts: 1, MsgID: 1 << 60,
			CreatedAt: t0.Add(-3 * time.Minute), UpdatedAt: t0},
		{ID: "MSGHOSTILE", App: "shop", ToUser: `<script>alert("touser")</script>`, TemplateID: `"><script>alert("tpl")</script>`,
			Status: service.StatusFailed, Reason: service.ReasonPermanentErrcode, Attempts: 1,
			LastError: &service.SendError{ErrCode: 40003, ErrMsg: `<script>alert("errmsg")</script>`},
			CreatedAt: t0.Add(-4 * time.Minute), UpdatedAt: t0, RequestID: `<script>alert("rid")</script>`,
			History: []service.HistoryEvent{{At: t0, Type: service.HistoryAttempt, Attempt: 1, Error: `<img src=x onerror=alert("hist")>`}}},
	}
	return f
}

// securityHeaders checks the headers every console response carries.
func securityHeaders(t *testing.T, what string, resp *http.Response, page bool) {
	t.Helper()
	assert.Equal(t, ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), what)
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), what)
	assert.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"), what)
	if page {
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), what)
	}
}

// inlineCode finds what a strict CSP would block: style attributes or
// elements, event handler attributes, and outside URLs. Scripts are
// checked by strictScripts.
var inlineCode = regexp.MustCompile(`(?i)<[^>]*\sstyle\s*=|<style|<[^>]*\son[a-z]+\s*=|(?:src|href|action)="(?:[a-z]+:)?//`)

var scriptTag = regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)

// strictScripts checks that every script of body is the console's own
// file, with nothing inline.
func strictScripts(t *testing.T, what, body string) {
	t.Helper()
	n := strings.Count(strings.ToLower(body), "<script")
	tags := scriptTag.FindAllStringSubmatch(body, -1)
	assert.Len(t, tags, n, "%s: every <script> is closed", what)
	for _, m := range tags {
		assert.Regexp(t, `^ src="/console/assets/console\.js\?v=[0-9a-f]+" defer$`, m[1], what)
		assert.Empty(t, strings.TrimSpace(m[2]), "%s: no inline script", what)
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	for _, path := range []string{
		"/console", "/console/", "/console/login", "/console/messages", "/console/messages?touser=oUser-1",
		"/console/messages/MSGEXHAUSTED", "/console/messages/NOSUCH", "/console/deadletters", "/console/messages?since=bad",
		"/console/nope", "/console/assets/nope.css",
	} {
		resp := h.do(req{path: path, cookies: []*http.Cookie{ck}})
		body := bodyOf(t, resp)
		securityHeaders(t, path, resp, true)
		assert.NotRegexp(t, inlineCode, body, "%s: nothing a strict CSP blocks", path)
		strictScripts(t, path, body)
	}
	for _, path := range []string{"/console/assets/console.css", "/console/assets/console.js"} {
		resp := h.do(req{path: path})
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		securityHeaders(t, path, resp, false)
		assert.Contains(t, resp.Header.Get("Cache-Control"), "max-age", path)
	}
	// Signed out, and on a refused POST, too.
	for _, r := range []req{{path: "/console"}, {path: "/console/login"}, {method: http.MethodPost, path: "/console/logout"}} {
		resp := h.do(r)
		securityHeaders(t, r.path, resp, true)
	}
	// Nowhere else.
	h.engine.GET("/v1/x", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	assert.Empty(t, h.do(req{path: "/v1/x"}).Header.Get("Content-Security-Policy"))
}

func TestSignInAndOut(t *testing.T) {
	h := newHarness(t, []wechat.Secret{"another-key-0123456789abcdef", testKey}, testSecret())

	resp := h.do(req{path: "/console/messages?touser=x"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "signed out: to the sign-in page")
	assert.Equal(t, "/console/login?next="+url.QueryEscape("/console/messages?touser=x"), resp.Header.Get("Location"))

	const wrong = "not-the-key-0123456789abcdef"
	resp = h.do(req{method: http.MethodPost, path: "/console/login", form: url.Values{"api_key": {wrong}}})
	body := bodyOf(t, resp)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Nil(t, cookieNamed(resp, CookieName))
	assert.Contains(t, body, "That is not an API key")
	assert.NotContains(t, body, wrong, "the key typed is not echoed")

	resp = h.do(req{method: http.MethodPost, path: "/console/login", form: url.Values{"api_key": {testKey}, "next": {"/console/deadletters"}}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/console/deadletters", resp.Header.Get("Location"))
	ck := cookieNamed(resp, CookieName)
	require.NotNil(t, ck)
	assert.True(t, ck.Secure, "Secure")
	assert.True(t, ck.HttpOnly, "HttpOnly")
	assert.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	assert.Equal(t, "/console", ck.Path)
	assert.Equal(t, int(DefaultSessionTTL.Seconds()), ck.MaxAge)
	assert.Equal(t, t0.Add(DefaultSessionTTL), ck.Expires)
	assert.NotContains(t, ck.Value, testKey)
	assert.NotContains(t, resp.Header.Get("Set-Cookie"), testKey)

	code, body, token := h.page("/console", ck)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `id="logout"`)
	require.NotEmpty(t, token)

	// Sign-out needs the CSRF token.
	resp = h.do(req{method: http.MethodPost, path: "/console/logout", cookies: []*http.Cookie{ck}, form: url.Values{}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Nil(t, cookieNamed(resp, CookieName), "the session is kept")
	resp = h.do(req{method: http.MethodPost, path: "/console/logout", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/console/login", resp.Header.Get("Location"))
	gone := cookieNamed(resp, CookieName)
	require.NotNil(t, gone)
	assert.Negative(t, gone.MaxAge, "the cookie is deleted")
	flashCk := cookieNamed(resp, FlashCookieName)
	require.NotNil(t, flashCk)
	resp = h.do(req{path: "/console/login", cookies: []*http.Cookie{flashCk}})
	assert.Contains(t, bodyOf(t, resp), "Signed out.")

	// The sign-in page sends a signed-in visitor on, and only within the console.
	for next, want := range map[string]string{
		"/console/messages": "/console/messages", "https://evil.example/": "/console", "//evil.example": "/console",
		"/console//evil.example": "/console", "/consolex": "/console", "/console/../v1/apps": "/console",
	} {
		resp = h.do(req{path: "/console/login?next=" + url.QueryEscape(next), cookies: []*http.Cookie{ck}})
		assert.Equal(t, want, resp.Header.Get("Location"), next)
	}
}

func TestSessionCookiesRefused(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	good := h.signIn(testKey).Value
	parts := strings.Split(good, ".")
	require.Len(t, parts, 5)
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, ".")
	}
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		return string(b)
	}
	otherSecret, _ := newSession([]byte("another-secret-0123456789abcdefg"), fingerprint([]byte("another-secret-0123456789abcdefg"), testKey), t0, time.Hour)
	open, _ := newSession(testSecret(), openFingerprint, t0, time.Hour)
	removedKey, _ := newSession(testSecret(), fingerprint(testSecret(), "removed-key-0123456789abcdef"), t0, time.Hour)
	cases := map[string]string{
		"tampered mac":        with(4, flip(parts[4])),
		"tampered expiry":     with(2, "9999999999"),
		"tampered nonce":      with(1, flip(parts[1])),
		"tampered key":        with(3, flip(parts[3])),
		"other version":       with(0, "v2"),
		"other secret":        otherSecret,
		"anonymous":           open,
		"removed key":         removedKey,
		"garbage":             "garbage",
		"empty":               "",
		"too long":            good + strings.Repeat("A", maxCookie),
		"the API key itself":  testKey,
		"six parts":           good + ".x",
		"mac not base64":      with(4, "!!!"),
		"expiry not a number": with(2, "soon"),
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			resp := h.do(req{path: "/console", cookies: []*http.Cookie{{Name: CookieName, Value: v}}})
			assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
			assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/console/login"))
		})
	}
	// The control: the untouched cookie works, until it expires.
	resp := h.do(req{path: "/console", cookies: []*http.Cookie{{Name: CookieName, Value: good}}})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	h.advance(DefaultSessionTTL - time.Second)
	resp = h.do(req{path: "/console", cookies: []*http.Cookie{{Name: CookieName, Value: good}}})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "valid to the last second")
	h.advance(time.Second)
	resp = h.do(req{path: "/console", cookies: []*http.Cookie{{Name: CookieName, Value: good}}})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "expired")

	// A new secret (the store lost its data) ends every session.
	h.advance(-time.Hour)
	h.secret = []byte("a-brand-new-secret-0123456789abc")
	resp = h.do(req{path: "/console", cookies: []*http.Cookie{{Name: CookieName, Value: good}}})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

// TestRemovedKeyEndsItsSessions: a console restarted without a key
// refuses that key's sessions and keeps the others'.
func TestRemovedKeyEndsItsSessions(t *testing.T) {
	const kept = "kept-key-0123456789abcdefghij"
	h := newHarness(t, []wechat.Secret{testKey, kept}, testSecret())
	gone, stays := h.signIn(testKey), h.signIn(kept)
	h2 := newHarness(t, []wechat.Secret{kept}, testSecret())
	assert.Equal(t, http.StatusSeeOther, h2.do(req{path: "/console", cookies: []*http.Cookie{gone}}).StatusCode)
	assert.Equal(t, http.StatusOK, h2.do(req{path: "/console", cookies: []*http.Cookie{stays}}).StatusCode)
}

func TestStateChangesNeedTheCSRFToken(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	_, _, token := h.page("/console/deadletters", ck)
	require.NotEmpty(t, token)
	other := h.signIn(testKey)
	_, _, otherToken := h.page("/console/deadletters", other)
	require.NotEqual(t, token, otherToken, "tokens are bound to the session")

	posts := []struct{ path string }{{"/console/messages/MSGEXHAUSTED/redrive"}, {"/console/apps/promo/resume"}}
	for _, p := range posts {
		for name, form := range map[string]url.Values{
			"no token":                 {},
			"empty token":              {"csrf": {""}},
			"another session's token":  {"csrf": {otherToken}},
			"a token with a bit wrong": {"csrf": {token[:len(token)-2] + "AA"}},
			"the session cookie":       {"csrf": {ck.Value}},
		} {
			resp := h.do(req{method: http.MethodPost, path: p.path, cookies: []*http.Cookie{ck}, form: form})
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", p.path, name)
		}
		// Without a session at all.
		resp := h.do(req{method: http.MethodPost, path: p.path, form: url.Values{"csrf": {token}}})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s without a session", p.path)
	}
	redrives, resumes := h.fake.changes()
	assert.Empty(t, redrives, "nothing was redriven")
	assert.Empty(t, resumes, "nothing was resumed")
	assert.Equal(t, service.StatusFailed, h.fake.status("MSGEXHAUSTED"))

	// The control: with the token, both work and say so on the next page.
	resp := h.do(req{method: http.MethodPost, path: "/console/messages/MSGEXHAUSTED/redrive", cookies: []*http.Cookie{ck},
		form: url.Values{"csrf": {token}, "return": {"/console/deadletters"}}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/console/deadletters", resp.Header.Get("Location"))
	assert.Equal(t, service.StatusQueued, h.fake.status("MSGEXHAUSTED"))
	fl := cookieNamed(resp, FlashCookieName)
	require.NotNil(t, fl)
	_, body, _ := h.page("/console/deadletters", ck) // no flash cookie sent: none shown
	assert.NotContains(t, body, `id="flash"`)
	resp = h.do(req{path: "/console/deadletters", cookies: []*http.Cookie{ck, fl}})
	body = bodyOf(t, resp)
	assert.Contains(t, body, "Message MSGEXHAUSTED redriven: it is queued again.")
	assert.NotContains(t, body, `data-id="MSGEXHAUSTED"`, "no longer a dead letter")
	assert.Negative(t, cookieNamed(resp, FlashCookieName).MaxAge, "a flash is shown once")

	resp = h.do(req{method: http.MethodPost, path: "/console/apps/promo/resume", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, resumes = h.fake.changes()
	assert.Equal(t, []string{"promo"}, resumes)
}

func TestCrossSitePostsRefused(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	_, _, token := h.page("/console", ck)
	for name, hdr := range map[string]map[string]string{
		"sec-fetch-site cross-site": {"Sec-Fetch-Site": "cross-site"},
		"sec-fetch-site same-site":  {"Sec-Fetch-Site": "same-site"},
		"origin elsewhere":          {"Origin": "https://evil.example"},
		"origin null":               {"Origin": "null"},
	} {
		for _, path := range []string{"/console/messages/MSGEXHAUSTED/redrive", "/console/apps/promo/resume", "/console/logout"} {
			resp := h.do(req{method: http.MethodPost, path: path, cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}}, header: hdr})
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s", name, path)
		}
		resp := h.do(req{method: http.MethodPost, path: "/console/login", form: url.Values{"api_key": {testKey}}, header: hdr})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s login", name)
		assert.Nil(t, cookieNamed(resp, CookieName), "%s login", name)
	}
	redrives, resumes := h.fake.changes()
	assert.Empty(t, redrives)
	assert.Empty(t, resumes)
	// Same origin, as a browser says it, passes.
	resp := h.do(req{method: http.MethodPost, path: "/console/apps/promo/resume", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}},
		header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://console.test"}})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

func TestHostileValuesAreEscaped(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	for _, path := range []string{"/console/messages", "/console/messages/MSGHOSTILE", "/console/deadletters",
		"/console/messages?touser=" + url.QueryEscape(`<script>alert("q")</script>`)} {
		code, body, _ := h.page(path, ck)
		require.Equal(t, http.StatusOK, code, path)
		assert.NotContains(t, body, "<script>alert", path)
		assert.NotContains(t, body, "<img src=x", path)
		assert.NotRegexp(t, inlineCode, body, path)
		strictScripts(t, path, body)
		assert.Contains(t, body, "&lt;script&gt;alert(", path)
	}
	_, body, _ := h.page("/console/messages/MSGHOSTILE", ck)
	assert.Contains(t, body, "&lt;img src=x onerror=alert(&#34;hist&#34;)&gt;")
	// A hostile id comes back in a flash message, escaped.
	_, _, token := h.page("/console", ck)
	resp := h.do(req{method: http.MethodPost, path: "/console/messages/" + url.PathEscape(`<b>x"`) + "/redrive", cookies: []*http.Cookie{ck},
		form: url.Values{"csrf": {token}, "return": {"/console/messages"}}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp = h.do(req{path: "/console/messages", cookies: []*http.Cookie{ck, cookieNamed(resp, FlashCookieName)}})
	body = bodyOf(t, resp)
	assert.Contains(t, body, "Message &lt;b&gt;x&#34; does not exist.")
}

func TestPagesWithAnEmptyStore(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	h.fake.overview, h.fake.msgs = service.Overview{}, nil
	ck := h.signIn(testKey)
	for path, want := range map[string]string{
		"/console":             "No apps configured.",
		"/console/messages":    "No messages match.",
		"/console/deadletters": "No failed messages.",
	} {
		code, body, _ := h.page(path, ck)
		assert.Equal(t, http.StatusOK, code, path)
		assert.Contains(t, body, want, path)
	}
	code, body, _ := h.page("/console/messages/NOSUCH", ck)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, body, "No such message")
}

func TestOverview(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	code, body, _ := h.page("/console", ck)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 2, strings.Count(body, "<svg "), "two charts")
	// accepted, sent, delivered, redriven; three failure reasons.
	assert.Equal(t, 7, strings.Count(body, "<polyline "))
	for _, s := range []string{"s-accepted", "s-sent", "s-delivered", service.ReasonAttemptsExhausted, service.ReasonUnconfirmed, service.ReasonPermanentErrcode} {
		assert.Contains(t, body, s)
	}
	// 144 minutes with 12 accepted each; 6 of them in the last hour.
	assert.Regexp(t, `accepted</td><td class="num">72</td><td class="num">1728</td>`, body)
	assert.Contains(t, body, `data-refresh="30"`, "the script refreshes the overview")
	assert.Regexp(t, `<dt>Backlog</dt><dd>7</dd>`, body)
	assert.Contains(t, body, "12.5s", "oldest age")
	for app, state := range map[string]string{"shop": "active", "news": "paced", "promo": "paused"} {
		assert.Regexp(t, `data-app="`+app+`">(?s:.)*?app-`+state, body, app)
	}
	assert.Equal(t, 1, strings.Count(body, `/resume"`), "a Resume button for the paused app only")
	assert.Contains(t, body, `action="/console/apps/promo/resume"`)
	assert.Contains(t, body, "daily_quota (errcode 45009)")
	assert.Contains(t, body, "2026-12-05 11:00:00Z", "until")
	// Every other page does not refresh itself.
	_, body, _ = h.page("/console/messages", ck)
	assert.Contains(t, body, `data-refresh="0"`)
}

func TestSearch(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	code, body, _ := h.page("/console/messages?touser=oUser-1&app=&status=&limit=1&since=2026-12-05T07:00&until=2026-12-05T09:00:00Z", ck)
	require.Equal(t, http.StatusOK, code)
	h.fake.mu.Lock()
	q := h.fake.searches[len(h.fake.searches)-1]
	h.fake.mu.Unlock()
	assert.Equal(t, service.MessageQuery{ToUser: "oUser-1", Limit: 1, Since: t0.Add(-time.Hour), Until: t0.Add(time.Hour)}, q)
	assert.Contains(t, body, `data-id="MSGEXHAUSTED"`)
	assert.NotContains(t, body, `data-id="MSGSENT"`, "on the next page")
	m := regexp.MustCompile(`id="next-page" rel="next" href="([^"]+)"|href="([^"]+)" id="next-page"`).FindStringSubmatch(body)
	require.NotNil(t, m, "a next page link")
	next := html.UnescapeString(m[1] + m[2])
	u, err := url.Parse(next)
	require.NoError(t, err)
	assert.Equal(t, "/console/messages", u.Path)
	assert.Equal(t, "oUser-1", u.Query().Get("touser"), "the filters are kept")
	assert.NotEmpty(t, u.Query().Get("cursor"))
	_, body, _ = h.page(next, ck)
	assert.Contains(t, body, `data-id="MSGSENT"`)
	assert.NotContains(t, body, `id="next-page"`)

	// The detail page: every field and the timeline.
	_, body, _ = h.page("/console/messages/MSGEXHAUSTED", ck)
	assert.Contains(t, body, "req-exhausted")
	assert.Contains(t, body, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	assert.Contains(t, body, "errcode -1: system error")
	assert.Equal(t, 3, strings.Count(body, `<tr class="ev-`), "three timeline rows")
	assert.Contains(t, body, "12.5 ms")
	assert.Contains(t, body, `action="/console/messages/MSGEXHAUSTED/redrive"`, "a failed message has a redrive button")
	_, body, _ = h.page("/console/messages/MSGSENT", ck)
	assert.NotContains(t, body, "/redrive", "a sent one has none")
}

func TestBadSearchFiltersAreShown(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	h.fake.mu.Lock()
	before := len(h.fake.searches)
	h.fake.mu.Unlock()
	code, body, _ := h.page("/console/messages?since=yesterday&limit=5000&touser=oUser-1", ck)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, `id="form-errors"`)
	assert.Contains(t, body, "<b>since</b>: not a time")
	assert.Contains(t, body, "<b>limit</b>: a number from 1 to 500")
	assert.Contains(t, body, `value="yesterday"`, "the form keeps what was typed")
	assert.Contains(t, body, `value="oUser-1"`)
	assert.NotContains(t, body, `id="results"`)
	h.fake.mu.Lock()
	assert.Equal(t, before, len(h.fake.searches), "the backend was not asked")
	h.fake.searchErr = &store.QueryError{Field: "template_id", Message: "needs app"}
	h.fake.mu.Unlock()
	code, body, _ = h.page("/console/messages?template_id=t1", ck)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "<b>template_id</b>: needs app")
	assert.Contains(t, body, `<span class="field-error">needs app</span>`)
	h.fake.mu.Lock()
	h.fake.searchErr = &store.QueryError{Field: "cursor", Message: "not a cursor of this search"}
	h.fake.mu.Unlock()
	code, body, _ = h.page("/console/deadletters?cursor=zzz", ck)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "<b>cursor</b>: not a cursor of this search")
	h.fake.mu.Lock()
	h.fake.searchErr = errors.Join(store.ErrUnavailable, errors.New("dial tcp: refused"))
	h.fake.mu.Unlock()
	code, body, _ = h.page("/console/messages", ck)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotContains(t, body, "dial tcp", "no internal detail")
}

func TestDeadLettersAndRedriveRules(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	code, body, token := h.page("/console/deadletters?app=shop", ck)
	require.Equal(t, http.StatusOK, code)
	h.fake.mu.Lock()
	assert.Equal(t, service.MessageQuery{App: "shop", Status: service.StatusFailed}, h.fake.searches[len(h.fake.searches)-1])
	h.fake.mu.Unlock()
	row := func(id string) string {
		m := regexp.MustCompile(`(?s)<tr data-id="` + id + `">.*?</tr>`).FindString(body)
		require.NotEmpty(t, m, id)
		return m
	}
	assert.NotContains(t, row("MSGEXHAUSTED"), `name="force"`, "attempts_exhausted needs no force")
	assert.Contains(t, row("MSGUNCONFIRMED"), `name="force"`, "unconfirmed needs force")
	assert.Contains(t, row("MSGEXHAUSTED"), "errcode -1: system error")
	assert.NotContains(t, body, "MSGSENT")

	post := func(id string, force bool) string {
		form := url.Values{"csrf": {token}, "return": {"/console/deadletters?app=shop"}}
		if force {
			form.Set("force", "1")
		}
		resp := h.do(req{method: http.MethodPost, path: "/console/messages/" + id + "/redrive", cookies: []*http.Cookie{ck}, form: form})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		assert.Equal(t, "/console/deadletters?app=shop", resp.Header.Get("Location"))
		resp = h.do(req{path: resp.Header.Get("Location"), cookies: []*http.Cookie{ck, cookieNamed(resp, FlashCookieName)}})
		m := regexp.MustCompile(`<p class="flash (\w+)" role="status" id="flash">([^<]*)</p>`).FindStringSubmatch(bodyOf(t, resp))
		require.NotNil(t, m)
		return m[1] + ": " + html.UnescapeString(m[2])
	}
	assert.Equal(t, "error: Message MSGUNCONFIRMED failed for a reason that needs Force: a resend may reach the user twice or fail again.", post("MSGUNCONFIRMED", false))
	assert.Equal(t, service.StatusFailed, h.fake.status("MSGUNCONFIRMED"))
	assert.Equal(t, "ok: Message MSGUNCONFIRMED redriven: it is queued again.", post("MSGUNCONFIRMED", true))
	assert.Equal(t, "error: Message MSGSENT has not failed: only a failed message can be redriven.", post("MSGSENT", false))
	// The redrive reached the backend with the request's id.
	m, err := h.fake.Message(t.Context(), "MSGUNCONFIRMED")
	require.NoError(t, err)
	last := m.History[len(m.History)-1]
	assert.Equal(t, service.HistoryRedrive, last.Type)
	assert.True(t, last.Forced)
	assert.NotEmpty(t, last.RequestID)

	// A return target outside the console is ignored.
	resp := h.do(req{method: http.MethodPost, path: "/console/messages/MSGEXHAUSTED/redrive", cookies: []*http.Cookie{ck},
		form: url.Values{"csrf": {token}, "return": {"https://evil.example/"}}})
	assert.Equal(t, "/console/messages/MSGEXHAUSTED", resp.Header.Get("Location"))
}

// TestOpenConsole: without API keys the console needs no sign-in, but
// its forms still need the CSRF token of the anonymous session.
func TestOpenConsole(t *testing.T) {
	h := newHarness(t, nil, testSecret())
	resp := h.do(req{path: "/console"})
	body := bodyOf(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "open: no sign-in")
	assert.NotContains(t, body, `id="logout"`)
	ck := cookieNamed(resp, CookieName)
	require.NotNil(t, ck, "an anonymous session binds the CSRF tokens")
	assert.True(t, ck.Secure && ck.HttpOnly)
	token := html.UnescapeString(csrfRE.FindStringSubmatch(body)[1])

	assert.Equal(t, http.StatusSeeOther, h.do(req{path: "/console/login"}).StatusCode, "nothing to sign in to")
	resp = h.do(req{method: http.MethodPost, path: "/console/apps/promo/resume", form: url.Values{"csrf": {token}}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a token without its session")
	resp = h.do(req{method: http.MethodPost, path: "/console/apps/promo/resume", cookies: []*http.Cookie{ck}, form: url.Values{}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a session without the token")
	_, resumes := h.fake.changes()
	assert.Empty(t, resumes)
	resp = h.do(req{method: http.MethodPost, path: "/console/apps/promo/resume", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}}})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, resumes = h.fake.changes()
	assert.Equal(t, []string{"promo"}, resumes)
}

// TestSecretsStayOut: the API key, the HMAC secret, session cookies and
// CSRF tokens appear in no log line, and the key and secret in no page.
func TestSecretsStayOut(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	h.do(req{method: http.MethodPost, path: "/console/login", form: url.Values{"api_key": {testKey + "x"}}})
	ck := h.signIn(testKey)
	var pages strings.Builder
	var token string
	for _, path := range []string{"/console", "/console/messages", "/console/messages/MSGEXHAUSTED", "/console/deadletters"} {
		_, body, tok := h.page(path, ck)
		pages.WriteString(body)
		token = tok
	}
	h.do(req{method: http.MethodPost, path: "/console/messages/MSGEXHAUSTED/redrive", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}}})
	h.do(req{method: http.MethodPost, path: "/console/apps/promo/resume", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {"forged"}}})
	h.do(req{method: http.MethodPost, path: "/console/logout", cookies: []*http.Cookie{ck}, form: url.Values{"csrf": {token}}})
	logs := h.logs.String()
	require.Contains(t, logs, "console: signed in", "the log is written")
	require.Contains(t, logs, "console: sign-in refused")
	require.Contains(t, logs, "console: message redriven")
	for name, s := range map[string]string{"API key": testKey, "secret": string(testSecret()), "session": ck.Value, "CSRF token": token} {
		assert.NotContains(t, logs, s, "%s in the log", name)
	}
	for name, s := range map[string]string{"API key": testKey, "secret": string(testSecret()), "session": ck.Value} {
		assert.NotContains(t, pages.String(), s, "%s in a page", name)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	b := &fakeBackend{}
	secret := func(context.Context) ([]byte, error) { return testSecret(), nil }
	for name, o := range map[string]Options{
		"no backend":        {APIKeys: []wechat.Secret{testKey}, Secret: secret},
		"no secret":         {Backend: b, APIKeys: []wechat.Secret{testKey}},
		"no keys, not open": {Backend: b, Secret: secret},
		"an empty key":      {Backend: b, Secret: secret, APIKeys: []wechat.Secret{testKey, ""}},
	} {
		_, err := New(o)
		assert.Error(t, err, name)
	}
}

// TestSecretUnavailable: without the secret (Redis down) pages answer
// 503 and nobody is signed in.
func TestSecretUnavailable(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	ck := h.signIn(testKey)
	con, err := New(Options{Backend: h.fake, APIKeys: []wechat.Secret{testKey},
		Secret: func(context.Context) ([]byte, error) { return nil, store.ErrUnavailable }})
	require.NoError(t, err)
	h.engine = gin.New()
	con.Register(h.engine)
	for _, r := range []req{{path: "/console", cookies: []*http.Cookie{ck}}, {method: http.MethodPost, path: "/console/login", form: url.Values{"api_key": {testKey}}}} {
		resp := h.do(r)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, r.path)
		assert.Nil(t, cookieNamed(resp, CookieName))
	}
}

// TestPlainHTTPNotice: the sign-in page warns that a Secure cookie does
// not survive plain HTTP, except on loopback or behind TLS.
func TestPlainHTTPNotice(t *testing.T) {
	h := newHarness(t, []wechat.Secret{testKey}, testSecret())
	for _, tt := range []struct {
		host, proto string
		warn        bool
	}{
		{"console.test", "", true},
		{"console.test", "https", false},
		{"127.0.0.1:8080", "", false},
		{"[::1]:8080", "", false},
		{"localhost:8080", "", false},
		{"10.0.0.5:8080", "", true},
	} {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+tt.host+"/console/login", nil)
		if tt.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tt.proto)
		}
		rec := httptest.NewRecorder()
		h.engine.ServeHTTP(rec, r)
		require.Equal(t, http.StatusOK, rec.Code, tt.host)
		assert.Equal(t, tt.warn, strings.Contains(rec.Body.String(), `id="plain-http"`), "%s %s", tt.host, tt.proto)
	}
}
