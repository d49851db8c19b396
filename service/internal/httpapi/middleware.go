package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/service"
)

// requestIDKey is where requestID stores the id in the gin context.
const requestIDKey = "httpapi.request_id"

// unmatchedRoute labels requests that matched no route (404, 405), so a
// raw path never becomes a metric label.
const unmatchedRoute = "unmatched"

// requestID takes the caller's X-Request-Id when it is 1-64 safe
// characters, or makes one, and sets it on the response.
func (a *api) requestID(c *gin.Context) {
	id := c.GetHeader(service.HeaderRequestID)
	if !validRequestID(id) {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
		id = hex.EncodeToString(b[:])
	}
	c.Set(requestIDKey, id)
	c.Header(service.HeaderRequestID, id)
	c.Next()
}

// validRequestID reports whether id is 1-64 characters of [A-Za-z0-9._-].
func validRequestID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) && id[i] != '_' && id[i] != '-' && id[i] != '.' {
			return false
		}
	}
	return true
}

// traceParentOf returns the request's W3C traceparent header when it is
// valid (version 00 form: 2-32-16-2 lower-case hex digits, neither id all
// zeros, version not ff), else "".
func traceParentOf(c *gin.Context) string {
	v := c.GetHeader(service.HeaderTraceParent)
	if validTraceParent(v) {
		return v
	}
	return ""
}

// validTraceParent reports whether v is a W3C traceparent this service
// keeps: exactly the four fields of version 00 (a later version's longer
// form is not kept, as this service cannot check it).
func validTraceParent(v string) bool {
	if len(v) != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if !(v[i] >= '0' && v[i] <= '9' || v[i] >= 'a' && v[i] <= 'f') {
			return false
		}
	}
	zero := func(s string) bool { return strings.Trim(s, "0") == "" }
	return v[:2] != "ff" && !zero(v[3:35]) && !zero(v[36:52])
}

// requestIDOf returns the request id set by requestID.
func requestIDOf(c *gin.Context) string {
	return c.GetString(requestIDKey)
}

// observe writes the access log line and the HTTP metrics, labelled with
// the route template. It logs neither headers nor bodies.
func (a *api) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	d := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = unmatchedRoute
	}
	status := c.Writer.Status()
	a.obs.requests(route, status).Inc()
	a.obs.seconds(route).Observe(d.Seconds())
	// Successes are counted by the metrics and logged at debug level only:
	// at thousands of requests a second a line each is noise and cost.
	// Client errors are logged at info, server errors at warn.
	// A 429 is a client over its rate limit: counted in
	// wxpush_http_rate_limited_total, logged at debug, so that a greedy
	// client cannot flood the log either.
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case status >= 400 && status != http.StatusTooManyRequests:
		level = slog.LevelInfo
	}
	ctx := c.Request.Context()
	if !a.log.Enabled(ctx, level) {
		return
	}
	a.log.LogAttrs(ctx, level, "http request",
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.String("request_id", requestIDOf(c)),
	)
}

// recover turns a panic in a handler into a logged JSON 500.
// http.ErrAbortHandler is passed on: it asks net/http to drop the
// connection.
func (a *api) recover(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
			panic(v)
		}
		a.log.ErrorContext(c.Request.Context(), "panic serving request",
			"request_id", requestIDOf(c),
			"route", c.FullPath(),
			"panic", fmt.Sprint(v),
			"stack", string(debug.Stack()),
		)
		if c.Writer.Written() {
			c.Abort()
			return
		}
		a.abort(c, http.StatusInternalServerError, internalError())
	}()
	c.Next()
}

// auth requires "Authorization: Bearer <key>" with one of the API keys,
// and records which one for the rate limits. It runs before any body is
// read. Without keys (InsecureNoAuth) it lets every request through.
func (a *api) auth(c *gin.Context) {
	if len(a.keys) == 0 {
		c.Next()
		return
	}
	token, ok := bearerToken(c.GetHeader("Authorization"))
	idx := -1
	if ok {
		idx = a.keyIndex(token)
	}
	if idx < 0 {
		c.Header("WWW-Authenticate", "Bearer")
		a.abort(c, http.StatusUnauthorized, &service.Error{Code: service.CodeUnauthorized, Message: "missing or invalid API key"})
		return
	}
	c.Set(keyIndexKey, idx)
	c.Next()
}

// keyIndex returns the position of token among the API keys, or -1. It
// compares the SHA-256 of token with that of every key in constant time:
// hashing hides the keys' lengths, and the loop visits all keys whether or
// not one matched.
func (a *api) keyIndex(token string) int {
	sum := sha256.Sum256([]byte(token))
	idx := -1
	for i := range a.keys {
		idx = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], a.keys[i][:]), i, idx)
	}
	return idx
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value: the scheme (case-insensitive, RFC 7235), exactly one
// space, and a token of visible ASCII characters (RFC 6750's b64token
// and more) with nothing after it.
func bearerToken(h string) (string, bool) {
	const scheme = "Bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	token := h[len(scheme):]
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] > '~' {
			return "", false
		}
	}
	return token, true
}
