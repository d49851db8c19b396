// Package client is a Go client of wxpushd's HTTP API (the routes of
// service/openapi/openapi.json under /v1): send and batch, read and search
// messages, dead letters and redrive, the overview, apps and users.
//
// Every method takes a context and makes one request (Messages one per
// page). An answer other than 2xx is returned as an *Error, which carries
// the status code, the API's error (code, message, field), the answer's
// X-Request-Id and its Retry-After; use errors.As to read it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wxpush/wxpush/service"
)

// DefaultUserAgent is the User-Agent of a Client without WithUserAgent.
const DefaultUserAgent = "wxpush-client/1"

// maxBody bounds how much of an answer is read.
const maxBody = 16 << 20

// Client calls one wxpushd (or a load balancer in front of several). It
// is safe for concurrent use.
type Client struct {
	base string // scheme, host and path prefix, without a trailing slash
	key  string
	hc   *http.Client
	ua   string
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as "Authorization: Bearer <key>" on every request.
func WithAPIKey(key string) Option { return func(c *Client) { c.key = key } }

// WithHTTPClient makes the requests with hc instead of
// http.DefaultClient.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header (default DefaultUserAgent).
func WithUserAgent(ua string) Option { return func(c *Client) { c.ua = ua } }

// New returns a client of the service at baseURL (e.g.
// "http://127.0.0.1:8080"; a path prefix is kept). It fails when baseURL is
// not an absolute http or https URL.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q is not an absolute http or https URL", baseURL)
	}
	u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/"), strings.TrimSuffix(u.RawPath, "/")
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u.String(), hc: http.DefaultClient, ua: DefaultUserAgent}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Error is a non-2xx answer of the API.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// API is the answer's {"error":{...}}; for an answer without one (a
	// proxy's 502) Code is empty and Message holds the start of the body.
	API service.Error
	// RequestID is the answer's X-Request-Id.
	RequestID string
	// RetryAfter is the answer's Retry-After (429, 503), or 0.
	RetryAfter time.Duration
}

// Error describes the answer: status, code, message and field.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wxpushd: %d", e.StatusCode)
	if e.API.Code != "" {
		b.WriteString(" " + e.API.Code)
	}
	if e.API.Message != "" {
		b.WriteString(": " + e.API.Message)
	}
	if e.API.Field != "" {
		b.WriteString(" (field " + e.API.Field + ")")
	}
	if e.RequestID != "" {
		b.WriteString(" [request " + e.RequestID + "]")
	}
	return b.String()
}

// requestIDKey keys a request id in a context.
type requestIDKey struct{}

// WithRequestID returns a context whose requests carry id as their
// X-Request-Id (the service keeps it on a message it accepts).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// call makes one request: body, when not nil, is sent as JSON; a 2xx
// answer is decoded into out (when not nil) and its headers returned. A
// non-2xx answer is an *Error; if it is one of keep, its body is decoded
// into out as well.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, hdr http.Header, body, out any, keep ...int) (http.Header, error) {
	target := c.base + path // path's variable segments are escaped
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("client: encoding the request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if id, ok := ctx.Value(requestIDKey{}).(string); ok && id != "" {
		req.Header.Set(service.HeaderRequestID, id)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := newError(resp, b)
		for _, k := range keep {
			if k == resp.StatusCode && out != nil {
				if err := json.Unmarshal(b, out); err != nil {
					return resp.Header, fmt.Errorf("client: %s %s: decoding the answer: %w (%w)", method, path, err, apiErr)
				}
			}
		}
		return resp.Header, apiErr
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.Header, fmt.Errorf("client: %s %s: decoding the answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// newError builds the *Error of a non-2xx answer.
func newError(resp *http.Response, body []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get(service.HeaderRequestID), RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	var er service.ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error.Code != "" {
		e.API = er.Error
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.API.Message = msg
	return e
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// Send queues one message (POST /v1/messages), with an Idempotency-Key
// when idempotencyKey is not empty. replayed is true when the answer is
// that of an earlier request with the same key and body.
func (c *Client) Send(ctx context.Context, req service.SendRequest, idempotencyKey string) (acc *service.Accepted, replayed bool, err error) {
	var hdr http.Header
	if idempotencyKey != "" {
		hdr = http.Header{service.HeaderIdempotencyKey: {idempotencyKey}}
	}
	acc = new(service.Accepted)
	h, err := c.call(ctx, http.MethodPost, "/v1/messages", nil, hdr, req, acc)
	if err != nil {
		return nil, false, err
	}
	return acc, h.Get(service.HeaderReplayed) == "true", nil
}

// SendBatch queues up to service.MaxBatch messages (POST
// /v1/messages/batch), each with its own idempotency key. A 202 or 207
// returns the per-item results and no error; when no item was accepted
// (400, 409) it returns the results and an *Error as well; other failures
// return only an error.
func (c *Client) SendBatch(ctx context.Context, items []service.BatchItem) (*service.BatchResponse, error) {
	out := new(service.BatchResponse)
	_, err := c.call(ctx, http.MethodPost, "/v1/messages/batch", nil, nil, service.BatchRequest{Messages: items}, out, http.StatusBadRequest, http.StatusConflict)
	if err != nil {
		if out.Results == nil {
			return nil, err
		}
		return out, err
	}
	return out, nil
}

// Get reads a message with its history (GET /v1/messages/{id}).
func (c *Client) Get(ctx context.Context, id string) (*service.Message, error) {
	m := new(service.Message)
	if _, err := c.call(ctx, http.MethodGet, "/v1/messages/"+url.PathEscape(id), nil, nil, nil, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Search reads one page of messages, newest first (GET /v1/messages).
func (c *Client) Search(ctx context.Context, q service.MessageQuery) (*service.MessagePage, error) {
	p := new(service.MessagePage)
	if _, err := c.call(ctx, http.MethodGet, "/v1/messages", queryValues(q), nil, nil, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Messages iterates over every message q matches, newest first, reading
// page after page from q.Cursor on. An error is yielded once, and ends the
// iteration.
func (c *Client) Messages(ctx context.Context, q service.MessageQuery) iter.Seq2[service.Message, error] {
	return func(yield func(service.Message, error) bool) {
		for {
			p, err := c.Search(ctx, q)
			if err != nil {
				yield(service.Message{}, err)
				return
			}
			for _, m := range p.Messages {
				if !yield(m, nil) {
					return
				}
			}
			if p.NextCursor == "" || p.NextCursor == q.Cursor {
				return
			}
			q.Cursor = p.NextCursor
		}
	}
}

// queryValues encodes a search's filters as GET /v1/messages takes them.
func queryValues(q service.MessageQuery) url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("app", q.App)
	set("touser", q.ToUser)
	set("status", string(q.Status))
	set("reason", q.Reason)
	set("template_id", q.TemplateID)
	set("request_id", q.RequestID)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("cursor", q.Cursor)
	return v
}

// DeadLetters reads one page of failed messages, newest first (GET
// /v1/deadletters); app, reason and cursor may be empty, limit 0 (the
// service's default).
func (c *Client) DeadLetters(ctx context.Context, app, reason, cursor string, limit int) (*service.MessagePage, error) {
	v := queryValues(service.MessageQuery{App: app, Reason: reason, Cursor: cursor, Limit: limit})
	p := new(service.MessagePage)
	if _, err := c.call(ctx, http.MethodGet, "/v1/deadletters", v, nil, nil, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Redrive puts a failed message back in the queue (POST
// /v1/messages/{id}/redrive) and returns it. A message that has not failed
// is a 409 not_failed; one whose reason needs force, without it, a 409
// force_required.
func (c *Client) Redrive(ctx context.Context, id string, force bool) (*service.Message, error) {
	m := new(service.Message)
	if _, err := c.call(ctx, http.MethodPost, "/v1/messages/"+url.PathEscape(id)+"/redrive", nil, nil, service.RedriveRequest{Force: force}, m); err != nil {
		return nil, err
	}
	return m, nil
}

// RedriveBulk redrives the failed messages req selects (POST
// /v1/deadletters/redrive).
func (c *Client) RedriveBulk(ctx context.Context, req service.BulkRedriveRequest) (*service.BulkRedriveResult, error) {
	r := new(service.BulkRedriveResult)
	if _, err := c.call(ctx, http.MethodPost, "/v1/deadletters/redrive", nil, nil, req, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Overview reads the per-minute counts of the last 24 hours, the queue
// and the apps (GET /v1/overview).
func (c *Client) Overview(ctx context.Context) (*service.Overview, error) {
	o := new(service.Overview)
	if _, err := c.call(ctx, http.MethodGet, "/v1/overview", nil, nil, nil, o); err != nil {
		return nil, err
	}
	return o, nil
}

// Apps reads every configured app's state (GET /v1/apps).
func (c *Client) Apps(ctx context.Context) ([]service.AppStatus, error) {
	var l service.AppList
	if _, err := c.call(ctx, http.MethodGet, "/v1/apps", nil, nil, nil, &l); err != nil {
		return nil, err
	}
	return l.Apps, nil
}

// App reads one app's state (GET /v1/apps/{app}).
func (c *Client) App(ctx context.Context, app string) (*service.AppStatus, error) {
	return c.app(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app))
}

// ResumeApp ends an app's pause for every instance (POST
// /v1/apps/{app}/resume) and returns its state.
func (c *Client) ResumeApp(ctx context.Context, app string) (*service.AppStatus, error) {
	return c.app(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/resume")
}

func (c *Client) app(ctx context.Context, method, path string) (*service.AppStatus, error) {
	st := new(service.AppStatus)
	if _, err := c.call(ctx, method, path, nil, nil, nil, st); err != nil {
		return nil, err
	}
	return st, nil
}

// UserState reads what the service knows of one user of an app (GET
// /v1/apps/{app}/users/{openid}).
func (c *Client) UserState(ctx context.Context, app, openid string) (*service.UserState, error) {
	u := new(service.UserState)
	if _, err := c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/users/"+url.PathEscape(openid), nil, nil, nil, u); err != nil {
		return nil, err
	}
	return u, nil
}

// IsCode reports whether err is an *Error with the API error code code
// (service.Code*); an empty code matches nothing.
func IsCode(err error, code string) bool {
	var e *Error
	return code != "" && errors.As(err, &e) && e.API.Code == code
}
