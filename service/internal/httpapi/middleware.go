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
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case status >= 400:
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

// auth requires "Authorization: Bearer <key>" with one of the API keys.
// It runs before any body is read. Without keys (InsecureNoAuth) it lets
// every request through.
func (a *api) auth(c *gin.Context) {
	if len(a.keys) == 0 {
		c.Next()
		return
	}
	token, ok := bearerToken(c.GetHeader("Authorization"))
	if !ok || !a.validKey(token) {
		c.Header("WWW-Authenticate", "Bearer")
		a.abort(c, http.StatusUnauthorized, &service.Error{Code: service.CodeUnauthorized, Message: "missing or invalid API key"})
		return
	}
	c.Next()
}

// validKey compares the SHA-256 of token with that of every key in
// constant time: hashing hides the keys' lengths, and the loop visits all
// keys whether or not one matched.
func (a *api) validKey(token string) bool {
	sum := sha256.Sum256([]byte(token))
	match := 0
	for i := range a.keys {
		match |= subtle.ConstantTimeCompare(sum[:], a.keys[i][:])
	}
	return match == 1
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value (the scheme is case-insensitive).
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
