package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/openapi"
)

// The OpenAPI tests check openapi.json against this package's router and
// handlers; TestDocumentIsValidOpenAPI31 in package openapi checks it
// against the OpenAPI 3.1 schema.
//
// Rule for the routes: every route of a handler built with every option
// that adds routes (Admin, Operator, and Extra registering WeChat's
// callback as wxpushd does) must be an operation of the document, and
// every operation of the document a route, except the HTML console:
// routes under /console are left out of the document (its info says so).
//
// Rule for the examples: an example named N of a response of status S
// describes one call. Its request is built from the operation's examples
// named N: path parameters (required), query and header parameters and the
// request body (each when it has one); the API key is sent unless the
// response example has the extension x-without-auth: true; its extension
// x-response-headers names headers the answer must carry. The examples
// run in document order against one handler over a store seeded with the
// messages the examples name (exampleIDs), so later examples see what
// earlier ones did (a replay follows its first send). Each answer must have
// status S, validate against the document (and its request too, for a
// 2xx other than 207, which answers a batch with invalid items), have every key the example has (recursively; a
// non-empty array in the example must be non-empty in the answer), and,
// for an error, the example's code and field. The example itself must
// validate against the document.

// consoleRoute reports whether a route belongs to the HTML console, which
// the document leaves out.
func consoleRoute(path string) bool {
	return path == "/console" || strings.HasPrefix(path, "/console/")
}

// The message ids and the callback token of the document's examples. The
// ids are of 2025-03-01 12:00 UTC, the time of the examples: the store
// under test keeps records for exampleRetention, so that no index trim
// drops them.
const (
	exampleFailed      = "06AN34YY000000000000008H04" // failed attempts_exhausted (GET /v1/messages/{id})
	exampleRedrivable  = "06AN34YY00000000000000H208" // failed attempts_exhausted (redriven)
	exampleUnconfirmed = "06AN34YY00000000000000SK0C" // failed unconfirmed (needs force)
	exampleToken       = "exampletoken"
	exampleCallbackAt  = 1740830400 // the timestamp of the signed callback example
	exampleRetention   = 10 * 365 * 24 * time.Hour
)

// exampleAdmin answers for apps "default" and "shop" like the real one,
// with "shop" paused on its daily quota.
type exampleAdmin struct{}

var _ AppAdmin = exampleAdmin{}

func (exampleAdmin) AppStatus(_ context.Context, app string) (*service.AppStatus, error) {
	if app != "default" && app != "shop" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownApp, app)
	}
	now := time.Now().UTC()
	until := now.Add(4 * time.Hour)
	return &service.AppStatus{
		App: app, AppID: "wx5e8a1f0c2b3d4e6f", State: service.AppPaused,
		Pause:     &service.AppPause{Reason: service.PauseDailyQuota, ErrCode: 45009, ErrMsg: "reach max api daily quota limit", Since: now, Until: &until},
		RateLimit: 50, RateBurst: 100, QuotaReset: "00:00 Asia/Shanghai", QuotaUsedToday: 100000, Waiting: 3, StatusWebhook: true,
		Token: service.TokenStatus{Mode: "stable", Cached: true, FetchedAt: &now, ExpiresAt: &until, BudgetUsedToday: 3, DailyBudget: 2000},
	}, nil
}

func (a exampleAdmin) ResumeApp(ctx context.Context, app string) (*service.AppStatus, error) {
	st, err := a.AppStatus(ctx, app)
	if err == nil {
		st.State, st.Pause = service.AppActive, nil
	}
	return st, err
}

func (a exampleAdmin) UserState(ctx context.Context, app, openid string) (*service.UserState, error) {
	if _, err := a.AppStatus(ctx, app); err != nil {
		return nil, err
	}
	following, source, event := false, "event", "unsubscribe"
	at := time.Now().UTC()
	return &service.UserState{App: app, OpenID: openid, Following: &following, Since: &at, Source: &source, LastEvent: &event, LastEventAt: &at}, nil
}

// exampleOperator is the store's operator with an overview as wxpushd
// builds it (counts, queue, apps).
type exampleOperator struct {
	*store.Store
	admin exampleAdmin
}

func (o exampleOperator) Overview(ctx context.Context) (*service.Overview, error) {
	now := time.Now()
	minutes, err := o.Counts(ctx, now.Add(-2*time.Minute), now)
	if err != nil {
		return nil, err
	}
	shop, _ := o.admin.AppStatus(ctx, "shop")
	return &service.Overview{Minutes: minutes, Queue: service.QueueState{Backlog: 3, OldestAgeSeconds: 0.4}, Apps: []service.AppStatus{*shop}}, nil
}

// newFullEnv is a handler with every route: a real store (miniredis or
// REDIS_URL), the example admin and operator, and WeChat's callback for
// app "shop" (token exampleToken, clock at exampleCallbackAt), seeded
// with the failed messages of the examples.
func newFullEnv(t *testing.T) *testEnv {
	t.Helper()
	r := redistest.New(t)
	st := store.New(r.Client, store.Options{Prefix: r.Prefix, Retention: exampleRetention})
	crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: exampleToken, AppID: "wx5e8a1f0c2b3d4e6f"})
	require.NoError(t, err)
	recv, err := callback.New(callback.Options{
		Store: st, Apps: []*apps.App{{Name: "shop", AppID: "wx5e8a1f0c2b3d4e6f", Crypter: crypter}},
		Now: func() time.Time { return time.Unix(exampleCallbackAt, 0) },
	})
	require.NoError(t, err)
	e := newEnv(t, func(o *Options) {
		o.Queue, o.Operator, o.Admin = st, exampleOperator{Store: st}, exampleAdmin{}
		o.NewID = func() string { return store.NewID(time.Now()) }
		o.Now = time.Now
		o.Extra = func(r *gin.Engine) { recv.Register(r) }
	})
	seedFailed(t, st, map[string]string{
		exampleFailed: service.ReasonAttemptsExhausted, exampleRedrivable: service.ReasonAttemptsExhausted, exampleUnconfirmed: service.ReasonUnconfirmed,
	})
	return e
}

// seedFailed stores one message of app "shop" per id and fails it with
// its reason.
func seedFailed(t *testing.T, st *store.Store, reasons map[string]string) {
	t.Helper()
	ctx := t.Context()
	var msgs []store.NewMessage
	for id := range reasons {
		req := service.SendRequest{App: "shop", ToUser: "oUser_01-x", TemplateID: "order_shipped", Data: map[string]service.DataValue{"thing1": {Value: "x"}}}
		msgs = append(msgs, store.NewMessage{ID: id, App: "shop", Request: req, RequestHash: RequestHash(req), AcceptedAt: time.Now(),
			RequestID: "ticket-4711", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	}
	_, err := st.Enqueue(ctx, msgs)
	require.NoError(t, err)
	entries, err := st.Read(ctx, "seed", len(msgs), 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, entries, len(msgs))
	for _, en := range entries {
		_, n, err := st.Begin(ctx, en.MessageID, time.Now(), store.Guard{})
		require.NoError(t, err)
		_, err = st.Settle(ctx, en, store.Settlement{Kind: store.SettleFail, App: "shop", Reason: reasons[en.MessageID], Attempt: n,
			HasErr: true, ErrCode: 45015, ErrMsg: "response out of time limit", Called: true}, time.Now())
		require.NoError(t, err)
	}
}

// loadDocument parses openapi.json and builds its validator.
func loadDocument(t *testing.T) (*v3.Document, validator.Validator) {
	t.Helper()
	doc, err := libopenapi.NewDocument(openapi.JSON())
	require.NoError(t, err)
	model, err := doc.BuildV3Model()
	require.NoError(t, err)
	return &model.Model, validator.NewValidatorFromV3Model(&model.Model)
}

// TestOpenAPIDocumentsEveryRoute fails with the routes the document
// lacks and the operations no route serves.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	e := newFullEnv(t)
	engine, ok := e.h.(*gin.Engine)
	require.True(t, ok, "New returns a %T, not a *gin.Engine", e.h)
	routed := map[string]bool{}
	for _, r := range engine.Routes() {
		if consoleRoute(r.Path) {
			continue
		}
		routed[r.Method+" "+openapi.FromGinPath(r.Path)] = true
	}
	ops, err := openapi.Operations()
	require.NoError(t, err)
	documented := map[string]bool{}
	for _, op := range ops {
		documented[op] = true
	}
	var undocumented, unrouted []string
	for r := range routed {
		if !documented[r] {
			undocumented = append(undocumented, r)
		}
	}
	for d := range documented {
		if !routed[d] {
			unrouted = append(unrouted, d)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unrouted)
	if len(undocumented) > 0 {
		t.Errorf("routes missing from openapi.json:\n  %s", strings.Join(undocumented, "\n  "))
	}
	if len(unrouted) > 0 {
		t.Errorf("operations of openapi.json that no route serves:\n  %s", strings.Join(unrouted, "\n  "))
	}
	if len(routed) < 15 {
		t.Errorf("only %d routes: the handler under test lacks some", len(routed))
	}
}

// exampleCall is one example of the document: the request it makes and
// the answer it shows.
type exampleCall struct {
	name, method, path string
	op                 *v3.Operation
	status             int
	ctype              string
	answer             []byte // the example's response body
	noAuth             bool
	headers            map[string]string // x-response-headers: headers the answer must carry
}

// TestOpenAPIExamplesMatchTheHandlers sends every example request of the
// document to the handler and checks the answer against the example and
// the document (see the rule at the top of this file).
func TestOpenAPIExamplesMatchTheHandlers(t *testing.T) {
	e := newFullEnv(t)
	model, v := loadDocument(t)
	var calls []exampleCall
	for path, item := range model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			for code, resp := range op.Responses.Codes.FromOldest() {
				status, err := strconv.Atoi(code)
				require.NoError(t, err, "%s %s: response %q", method, path, code)
				for ctype, mt := range resp.Content.FromOldest() {
					for name, ex := range mt.Examples.FromOldest() {
						c := exampleCall{name: name, method: strings.ToUpper(method), path: path, op: op, status: status, ctype: ctype}
						c.answer = nodeBytes(t, ex.Value, ctype)
						if x, ok := ex.Extensions.Get("x-without-auth"); ok {
							c.noAuth = x.Value == "true"
						}
						if x, ok := ex.Extensions.Get("x-response-headers"); ok {
							require.NoError(t, x.Decode(&c.headers), "%s %s: example %s: x-response-headers", method, path, name)
						}
						calls = append(calls, c)
					}
				}
			}
		}
	}
	if len(calls) < 30 {
		t.Fatalf("openapi.json has %d response examples; the test expects at least 30", len(calls))
	}
	for _, c := range calls {
		t.Run(c.method+" "+c.path+" "+c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, c.request(t))
			got := rec.Body.Bytes()
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, c.status, got)
			}
			respond := func(body []byte, ctype string) *http.Response {
				h := rec.Header().Clone()
				h.Set("Content-Type", ctype)
				return &http.Response{StatusCode: rec.Code, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: c.request(t)}
			}
			for k, want := range c.headers {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("header %s: %q, want the example's %q", k, got, want)
				}
			}
			if ok, errs := v.ValidateHttpResponse(c.request(t), respond(got, rec.Header().Get("Content-Type"))); !ok {
				t.Errorf("the answer does not match the document:%s\nbody %s", describe(errs), got)
			}
			if ok, errs := v.ValidateHttpResponse(c.request(t), respond(c.answer, c.ctype)); !ok {
				t.Errorf("the example's answer does not match the document:%s", describe(errs))
			}
			if c.status < 300 && c.status != http.StatusMultiStatus {
				if ok, errs := v.ValidateHttpRequest(c.request(t)); !ok {
					t.Errorf("the example's request does not match the document:%s", describe(errs))
				}
			}
			if !strings.Contains(c.ctype, "json") {
				if string(got) != string(c.answer) {
					t.Errorf("body %q, want the example's %q", got, c.answer)
				}
				return
			}
			var want, have any
			require.NoError(t, json.Unmarshal(c.answer, &want))
			require.NoError(t, json.Unmarshal(got, &have), "body %s", got)
			for _, problem := range covers(want, have, "") {
				t.Errorf("the answer lacks what the example shows: %s\nbody %s", problem, got)
			}
			if w, ok := want.(map[string]any)["error"].(map[string]any); ok {
				h, _ := have.(map[string]any)["error"].(map[string]any)
				if h["code"] != w["code"] || h["field"] != w["field"] {
					t.Errorf("error code %v field %v, want the example's %v and %v", h["code"], h["field"], w["code"], w["field"])
				}
			}
		})
	}
}

// request builds the example's request (a fresh one each call: a body is
// read once).
func (c exampleCall) request(t *testing.T) *http.Request {
	t.Helper()
	path := c.path
	query := url.Values{}
	header := http.Header{}
	for _, p := range c.op.Parameters {
		ex, ok := p.Examples.Get(c.name)
		if !ok {
			if p.In == "path" {
				t.Fatalf("%s %s: path parameter %s has no example %q", c.method, c.path, p.Name, c.name)
			}
			continue
		}
		var val any
		require.NoError(t, ex.Value.Decode(&val))
		s := fmt.Sprint(val)
		switch p.In {
		case "path":
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(s))
		case "query":
			query.Set(p.Name, s)
		case "header":
			header.Set(p.Name, s)
		}
	}
	var body []byte
	if c.op.RequestBody != nil {
		for ctype, mt := range c.op.RequestBody.Content.FromOldest() {
			if ex, ok := mt.Examples.Get(c.name); ok {
				body = nodeBytes(t, ex.Value, ctype)
				header.Set("Content-Type", ctype)
			}
		}
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req := httptest.NewRequest(c.method, target, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	if !c.noAuth {
		req.Header.Set("Authorization", "Bearer "+testKey)
	}
	return req
}

// yamlNode is the value of an example as libopenapi holds it.
type yamlNode interface{ Decode(v any) error }

// nodeBytes encodes an example value: JSON for a JSON media type, the
// string itself for others.
func nodeBytes(t *testing.T, n yamlNode, ctype string) []byte {
	t.Helper()
	var v any
	require.NoError(t, n.Decode(&v))
	if s, ok := v.(string); ok && !strings.Contains(ctype, "json") {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// covers returns where have lacks a key of want, or an element of a
// non-empty array of want, recursively (values may differ).
func covers(want, have any, at string) []string {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s is %T, not an object", cmpOr(at, "the body"), have)}
		}
		var out []string
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				out = append(out, "no "+at+"."+k)
				continue
			}
			out = append(out, covers(wv, hv, at+"."+k)...)
		}
		return out
	case []any:
		h, ok := have.([]any)
		switch {
		case !ok:
			return []string{fmt.Sprintf("%s is %T, not an array", at, have)}
		case len(w) > 0 && len(h) == 0:
			return []string{at + " is empty"}
		case len(w) > 0:
			return covers(w[0], h[0], at+"[0]")
		}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// describe lists validation errors, one a line.
func describe(errs []*liberrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, se := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    at %s: %s", se.FieldPath, se.Reason)
		}
	}
	return b.String()
}

// TestOpenAPIIsServedWithoutAuth checks GET /openapi.json: the embedded
// document, as JSON, without an API key.
func TestOpenAPIIsServedWithoutAuth(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.do(t, http.MethodGet, "/openapi.json", "", map[string]string{"Authorization": ""})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, openapi.ContentType, rec.Header().Get("Content-Type"))
	require.True(t, bytes.Equal(openapi.JSON(), rec.Body.Bytes()), "the body is not openapi.json")
}
