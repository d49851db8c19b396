package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{name: "no keys without InsecureNoAuth", edit: func(o *Options) { o.APIKeys = nil }},
		{name: "empty key", edit: func(o *Options) { o.APIKeys = []wechat.Secret{"k", ""} }},
		{name: "no queue", edit: func(o *Options) { o.Queue = nil }},
		{name: "no id generator", edit: func(o *Options) { o.NewID = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Queue: newFakeQueue(), APIKeys: []wechat.Secret{"k"}, NewID: func() string { return "id" }}
			tt.edit(&opts)
			h, err := New(opts)
			if err == nil {
				t.Errorf("New(%s) = %v, nil; want an error", tt.name, h)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.APIKeys = []wechat.Secret{"first-key", testKey} })
	big := `{"touser":"` + strings.Repeat("a", 100<<10) + `"}`
	tests := []struct {
		name   string
		auth   string
		body   string
		status int
	}{
		{name: "missing", auth: "", body: validBody, status: http.StatusUnauthorized},
		{name: "wrong key", auth: "Bearer not-the-key", body: validBody, status: http.StatusUnauthorized},
		{name: "key prefix", auth: "Bearer " + testKey[:10], body: validBody, status: http.StatusUnauthorized},
		{name: "basic scheme", auth: "Basic " + testKey, body: validBody, status: http.StatusUnauthorized},
		{name: "no token", auth: "Bearer ", body: validBody, status: http.StatusUnauthorized},
		{name: "bare key", auth: testKey, body: validBody, status: http.StatusUnauthorized},
		{name: "checked before the body: oversized", auth: "Bearer nope", body: big, status: http.StatusUnauthorized},
		{name: "checked before the body: malformed", auth: "", body: "{", status: http.StatusUnauthorized},
		{name: "second key", auth: "Bearer " + testKey, body: validBody, status: http.StatusAccepted},
		{name: "first key", auth: "Bearer first-key", body: validBody, status: http.StatusAccepted},
		{name: "scheme is case-insensitive", auth: "bearer first-key", body: validBody, status: http.StatusAccepted},
		// Parsed exactly: the scheme, one space, the key, nothing else.
		{name: "two spaces", auth: "Bearer  first-key", body: validBody, status: http.StatusUnauthorized},
		{name: "trailing space", auth: "Bearer first-key ", body: validBody, status: http.StatusUnauthorized},
		{name: "trailing tab", auth: "Bearer first-key\t", body: validBody, status: http.StatusUnauthorized},
		{name: "tab for the space", auth: "Bearer\tfirst-key", body: validBody, status: http.StatusUnauthorized},
		{name: "key then more", auth: "Bearer first-key extra", body: validBody, status: http.StatusUnauthorized},
		{name: "spaces only", auth: "Bearer   ", body: validBody, status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(t, http.MethodPost, "/v1/messages", tt.body, map[string]string{"Authorization": tt.auth})
			if got := rec.Code; got != tt.status {
				t.Fatalf("POST with Authorization %q: status %d, want %d (%s)", tt.auth, got, tt.status, rec.Body)
			}
			if tt.status != http.StatusUnauthorized {
				return
			}
			if got := apiError(t, rec).Code; got != service.CodeUnauthorized {
				t.Errorf("code = %q, want %q", got, service.CodeUnauthorized)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
		})
	}

	t.Run("every /v1 route", func(t *testing.T) {
		for _, r := range []struct{ method, path string }{
			{http.MethodPost, "/v1/messages/batch"},
			{http.MethodGet, "/v1/messages/msg-1"},
		} {
			rec := e.do(t, r.method, r.path, "", map[string]string{"Authorization": ""})
			if got := rec.Code; got != http.StatusUnauthorized {
				t.Errorf("%s %s without a key: status %d, want 401", r.method, r.path, got)
			}
		}
	})
	t.Run("probes are open", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			rec := e.do(t, http.MethodGet, path, "", map[string]string{"Authorization": ""})
			if got := rec.Code; got != http.StatusOK {
				t.Errorf("GET %s without a key: status %d, want 200", path, got)
			}
		}
	})
}

func TestInsecureNoAuth(t *testing.T) {
	t.Parallel()
	t.Run("no keys", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.APIKeys, o.InsecureNoAuth = nil, true })
		rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{"Authorization": ""})
		if got := rec.Code; got != http.StatusAccepted {
			t.Errorf("status %d, want 202 (%s)", got, rec.Body)
		}
		if !strings.Contains(e.logs.String(), "authentication is disabled") {
			t.Errorf("no warning in the logs: %s", e.logs)
		}
	})
	t.Run("keys still enforced", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.InsecureNoAuth = true })
		rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{"Authorization": ""})
		if got := rec.Code; got != http.StatusUnauthorized {
			t.Errorf("status %d, want 401 (%s)", got, rec.Body)
		}
	})
}

func TestSendAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body := `{"touser":"oUser_01-x","template_id":"tmpl-1","url":"https://example.com/o?id=1&x=<y>",` +
		`"miniprogram":{"appid":"wx_123","pagepath":"pages/a?b=1"},"data":{"thing1":{"value":"你好 <b>","color":"#FF0000"},"amount2":{"value":"1"}}}`
	rec := e.do(t, http.MethodPost, "/v1/messages", body, map[string]string{service.HeaderIdempotencyKey: "order 42/A"})
	if got, want := rec.Code, http.StatusAccepted; got != want {
		t.Fatalf("status %d, want %d (%s)", got, want, rec.Body)
	}
	if got, want := rec.Body.String(), `{"id":"msg-1","status":"queued"}`+"\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
	if got := rec.Header().Get(service.HeaderReplayed); got != "" {
		t.Errorf("%s = %q on a new message, want none", service.HeaderReplayed, got)
	}

	wantReq := service.SendRequest{
		App: "default", ToUser: "oUser_01-x", TemplateID: "tmpl-1", URL: "https://example.com/o?id=1&x=<y>",
		MiniProgram: &service.MiniProgram{AppID: "wx_123", PagePath: "pages/a?b=1"},
		Data: map[string]service.DataValue{
			"thing1":  {Value: "你好 <b>", Color: "#FF0000"},
			"amount2": {Value: "1"},
		},
	}
	wantJSON, _ := canonical(wantReq)
	want := []store.NewMessage{{
		ID: "msg-1", App: "default", Request: wantReq, RequestJSON: wantJSON, IdempotencyKey: "order 42/A",
		RequestHash: RequestHash(wantReq), AcceptedAt: fixedNow(), RequestID: rec.Header().Get(service.HeaderRequestID),
	}}
	if want[0].RequestID == "" {
		t.Errorf("no %s on the answer", service.HeaderRequestID)
	}
	if !strings.Contains(string(wantJSON), "&x=<y>") {
		t.Errorf("canonical JSON %s HTML-escapes", wantJSON)
	}
	if got := e.q.enqueued(); !reflect.DeepEqual(got, want) {
		t.Errorf("enqueued %+v, want %+v", got, want)
	}
	if got := e.q.callCount(); got != 1 {
		t.Errorf("%d Enqueue calls, want 1", got)
	}
}

func TestSendExplicitApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rec := e.do(t, http.MethodPost, "/v1/messages", `{"app":"shop",`+validBody[1:], nil)
	if got := rec.Code; got != http.StatusAccepted {
		t.Fatalf("status %d, want 202 (%s)", got, rec.Body)
	}
	msgs := e.q.enqueued()
	if len(msgs) != 1 || msgs[0].App != "shop" || msgs[0].Request.App != "shop" {
		t.Errorf("enqueued %+v, want one message for app shop", msgs)
	}
}

func TestSendIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	key := map[string]string{service.HeaderIdempotencyKey: "k-1"}

	first := e.do(t, http.MethodPost, "/v1/messages", validBody, key)
	if first.Code != http.StatusAccepted {
		t.Fatalf("first: status %d, want 202 (%s)", first.Code, first.Body)
	}

	// Same body, reformatted: the same normalized request.
	again := e.do(t, http.MethodPost, "/v1/messages", "\n "+strings.ReplaceAll(validBody, ",", " ,\n")+"\n", key)
	if got, want := again.Code, http.StatusAccepted; got != want {
		t.Fatalf("replay: status %d, want %d (%s)", got, want, again.Body)
	}
	if got, want := again.Body.String(), first.Body.String(); got != want {
		t.Errorf("replay body %q, want the original %q", got, want)
	}
	if got := again.Header().Get(service.HeaderReplayed); got != "true" {
		t.Errorf("%s = %q, want true", service.HeaderReplayed, got)
	}

	// Naming the app that an empty app resolves to is the same request.
	named := e.do(t, http.MethodPost, "/v1/messages", `{"app":"default",`+validBody[1:], key)
	if got := named.Code; got != http.StatusAccepted || named.Header().Get(service.HeaderReplayed) != "true" {
		t.Errorf("explicit default app: status %d, replayed %q; want a 202 replay", got, named.Header().Get(service.HeaderReplayed))
	}

	conflict := e.do(t, http.MethodPost, "/v1/messages", strings.Replace(validBody, "hello", "bye", 1), key)
	if got, want := conflict.Code, http.StatusConflict; got != want {
		t.Fatalf("conflict: status %d, want %d (%s)", got, want, conflict.Body)
	}
	if got := apiError(t, conflict); got.Code != service.CodeIdempotencyConflict || got.Field != service.HeaderIdempotencyKey {
		t.Errorf("conflict error %+v, want code %s on field %s", got, service.CodeIdempotencyConflict, service.HeaderIdempotencyKey)
	}
	if got := conflict.Header().Get(service.HeaderReplayed); got != "" {
		t.Errorf("%s = %q on a conflict, want none", service.HeaderReplayed, got)
	}

	metrics := e.do(t, http.MethodGet, "/metrics", "", nil).Body.String()
	for _, want := range []string{
		`wxpush_messages_accepted_total{app="default"} 1`,
		`wxpush_messages_replayed_total{app="default"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestSendBadIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for name, key := range map[string]string{
		"empty":     "",
		"too long":  strings.Repeat("k", 256),
		"control":   "a\x01b",
		"non-ASCII": "ключ",
		"tab":       "a\tb",
	} {
		t.Run(name, func(t *testing.T) {
			rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{service.HeaderIdempotencyKey: key})
			if got := rec.Code; got != http.StatusBadRequest {
				t.Fatalf("Idempotency-Key %q: status %d, want 400", key, got)
			}
			if got := apiError(t, rec); got.Code != service.CodeInvalidRequest || got.Field != service.HeaderIdempotencyKey {
				t.Errorf("Idempotency-Key %q: error %+v, want invalid_request on %s", key, got, service.HeaderIdempotencyKey)
			}
		})
	}
	if got := e.q.callCount(); got != 0 {
		t.Errorf("%d Enqueue calls, want none", got)
	}
	t.Run("255 characters", func(t *testing.T) {
		rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{service.HeaderIdempotencyKey: strings.Repeat("k", 255)})
		if got := rec.Code; got != http.StatusAccepted {
			t.Errorf("status %d, want 202 (%s)", got, rec.Body)
		}
	})
}

// withField returns validBody with one top-level member replaced or added.
func withField(name, value string) string {
	fields := map[string]string{
		"touser":      `"oUser_01-x"`,
		"template_id": `"tmpl-1"`,
		"data":        `{"thing1":{"value":"hello"}}`,
	}
	if value == "" {
		delete(fields, name)
	} else {
		fields[name] = value
	}
	var parts []string
	for _, k := range []string{"app", "touser", "template_id", "url", "miniprogram", "data", "extra"} {
		if v, ok := fields[k]; ok {
			parts = append(parts, fmt.Sprintf("%q:%s", k, v))
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// dataWith returns a data object with n keys k0..k(n-1).
func dataWith(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":{"value":"v"}`, i)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestSendValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		name  string
		body  string
		field string // "" with status 202: accepted
	}{
		{name: "touser missing", body: withField("touser", ""), field: "touser"},
		{name: "touser empty", body: withField("touser", `""`), field: "touser"},
		{name: "touser bad characters", body: withField("touser", `"o user"`), field: "touser"},
		{name: "touser too long", body: withField("touser", `"`+strings.Repeat("a", 65)+`"`), field: "touser"},
		{name: "touser 64", body: withField("touser", `"`+strings.Repeat("a", 64)+`"`)},
		{name: "touser number", body: withField("touser", `42`), field: "touser"},
		{name: "template_id missing", body: withField("template_id", ""), field: "template_id"},
		{name: "template_id with space", body: withField("template_id", `"tm pl"`), field: "template_id"},
		{name: "template_id with newline", body: withField("template_id", `"tmpl\n"`), field: "template_id"},
		{name: "template_id too long", body: withField("template_id", `"`+strings.Repeat("t", 65)+`"`), field: "template_id"},
		{name: "template_id 64 runes", body: withField("template_id", `"`+strings.Repeat("模", 64)+`"`)},
		{name: "url relative", body: withField("url", `"/orders/1"`), field: "url"},
		{name: "url ftp", body: withField("url", `"ftp://example.com/a"`), field: "url"},
		{name: "url without host", body: withField("url", `"https:///a"`), field: "url"},
		{name: "url opaque", body: withField("url", `"http:example.com"`), field: "url"},
		{name: "url unparsable", body: withField("url", `"http://a b.com/%zz"`), field: "url"},
		{name: "url too long", body: withField("url", `"https://example.com/`+strings.Repeat("a", 1005)+`"`), field: "url"},
		{name: "url 1024", body: withField("url", `"https://example.com/`+strings.Repeat("a", 1004)+`"`)},
		{name: "miniprogram without appid", body: withField("miniprogram", `{"pagepath":"index"}`), field: "miniprogram.appid"},
		{name: "miniprogram appid with dash", body: withField("miniprogram", `{"appid":"wx-1"}`), field: "miniprogram.appid"},
		{name: "miniprogram appid too long", body: withField("miniprogram", `{"appid":"`+strings.Repeat("w", 65)+`"}`), field: "miniprogram.appid"},
		{name: "miniprogram pagepath too long", body: withField("miniprogram", `{"appid":"wx1","pagepath":"`+strings.Repeat("p", 257)+`"}`), field: "miniprogram.pagepath"},
		{name: "miniprogram appid wrong type", body: withField("miniprogram", `{"appid":true}`), field: "miniprogram.appid"},
		{name: "data missing", body: withField("data", ""), field: "data"},
		{name: "data empty", body: withField("data", `{}`), field: "data"},
		{name: "data null", body: withField("data", `null`), field: "data"},
		{name: "data 51 keys", body: withField("data", dataWith(51)), field: "data"},
		{name: "data 50 keys", body: withField("data", dataWith(50))},
		{name: "data key with dash", body: withField("data", `{"thing-1":{"value":"v"}}`), field: "data"},
		{name: "data key too long", body: withField("data", `{"`+strings.Repeat("k", 65)+`":{"value":"v"}}`), field: "data"},
		{name: "data value empty", body: withField("data", `{"thing1":{"value":""}}`), field: "data.thing1.value"},
		{name: "data value missing", body: withField("data", `{"thing1":{"color":"#000000"}}`), field: "data.thing1.value"},
		{name: "data value too long", body: withField("data", `{"thing1":{"value":"`+strings.Repeat("字", 2049)+`"}}`), field: "data.thing1.value"},
		{name: "data value 2048 runes", body: withField("data", `{"thing1":{"value":"`+strings.Repeat("字", 2048)+`"}}`)},
		{name: "data color name", body: withField("data", `{"thing1":{"value":"v","color":"red"}}`), field: "data.thing1.color"},
		{name: "data color short", body: withField("data", `{"thing1":{"value":"v","color":"#FFF"}}`), field: "data.thing1.color"},
		{name: "data color not hex", body: withField("data", `{"thing1":{"value":"v","color":"#GGGGGG"}}`), field: "data.thing1.color"},
		{name: "data color lowercase", body: withField("data", `{"thing1":{"value":"v","color":"#a0b1c2"}}`)},
		{name: "app unknown", body: withField("app", `"nope"`), field: "app"},
		{name: "unknown field", body: withField("extra", `1`), field: "extra"},
		{name: "unknown nested field", body: withField("data", `{"thing1":{"value":"v","size":1}}`), field: "size"},
		{name: "unknown miniprogram field", body: withField("miniprogram", `{"appid":"wx1","path":"x"}`), field: "path"},
		{name: "malformed", body: `{"touser":`},
		{name: "syntax error", body: `{"touser" "x"}`},
		{name: "empty body", body: ``},
		{name: "array", body: `[` + validBody + `]`},
		{name: "string", body: `"hello"`},
		{name: "trailing object", body: validBody + `{}`},
		{name: "trailing garbage", body: validBody + ` x`},
		{name: "trailing bracket", body: validBody + `]`},
		{name: "null", body: `null`, field: "touser"},
	}
	accepted := map[string]bool{
		"touser 64": true, "template_id 64 runes": true, "url 1024": true, "data 50 keys": true,
		"data value 2048 runes": true, "data color lowercase": true,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(t, http.MethodPost, "/v1/messages", tt.body, nil)
			if accepted[tt.name] {
				if got := rec.Code; got != http.StatusAccepted {
					t.Errorf("status %d, want 202 (%s)", got, rec.Body)
				}
				return
			}
			if got := rec.Code; got != http.StatusBadRequest {
				t.Fatalf("body %.200q: status %d, want 400 (%s)", tt.body, got, rec.Body)
			}
			got := apiError(t, rec)
			if got.Code != service.CodeInvalidRequest || got.Field != tt.field {
				t.Errorf("body %.200q: error %+v, want invalid_request on field %q", tt.body, got, tt.field)
			}
		})
	}
	if got, want := e.q.callCount(), len(accepted); got != want {
		t.Errorf("%d Enqueue calls, want %d (only for accepted bodies)", got, want)
	}
}

func TestSendValidationMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct{ body, want string }{
		{withField("touser", `"a b"`), `touser must be 1-64 letters, digits, "_" or "-"`},
		{withField("touser", ""), "touser is required"},
		{withField("extra", "1"), `unknown field "extra"`},
		{withField("touser", "1"), "touser must be a JSON string, not a JSON number"},
		{withField("miniprogram", `"wx1"`), "miniprogram must be a JSON object, not a JSON string"},
		{withField("data", `{"thing1":{"value":""}}`), "data.thing1.value is required"},
	}
	for _, tt := range tests {
		rec := e.do(t, http.MethodPost, "/v1/messages", tt.body, nil)
		if got := apiError(t, rec).Message; !strings.Contains(got, tt.want) {
			t.Errorf("body %s: message %q, want it to contain %q", tt.body, got, tt.want)
		}
	}
}

func TestSendTooLarge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		maxBody int64
		body    string
	}{
		{name: "default limit", body: withField("data", `{"thing1":{"value":"`+strings.Repeat("a", 64<<10)+`"}}`)},
		{name: "whitespace after a valid object", body: validBody + strings.Repeat(" ", 64<<10)},
		{name: "configured limit", maxBody: 64, body: validBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.MaxBody = tt.maxBody })
			rec := e.do(t, http.MethodPost, "/v1/messages", tt.body, nil)
			if got := rec.Code; got != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d-byte body: status %d, want 413 (%.200s)", len(tt.body), got, rec.Body)
			}
			if got := apiError(t, rec).Code; got != service.CodePayloadTooLarge {
				t.Errorf("code %q, want %q", got, service.CodePayloadTooLarge)
			}
		})
	}
	t.Run("just under the limit", func(t *testing.T) {
		e := newEnv(t, nil)
		body := withField("url", `"https://e.com/`+strings.Repeat("a", 1000)+`"`)
		body += strings.Repeat(" ", DefaultMaxBody-len(body))
		rec := e.do(t, http.MethodPost, "/v1/messages", body, nil)
		if got := rec.Code; got != http.StatusAccepted {
			t.Errorf("%d-byte body: status %d, want 202 (%s)", len(body), got, rec.Body)
		}
	})
}

// TestSendStoreTimeout: a store that does not answer at all (a dead host
// drops packets) gives a prompt 503 within StoreTimeout, not a hung client.
func TestSendStoreTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.StoreTimeout = 50 * time.Millisecond })
	e.q.hang = true
	rec := e.do(t, http.MethodPost, "/v1/messages", validBody, nil)
	if rec.Code != http.StatusServiceUnavailable || apiError(t, rec).Code != service.CodeUnavailable {
		t.Fatalf("status %d %s, want 503 unavailable", rec.Code, rec.Body)
	}
}

func TestSendQueueFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		results func([]store.NewMessage) []store.EnqueueResult
		status  int
		code    string
	}{
		{name: "unavailable", err: errUnavailable(), status: http.StatusServiceUnavailable, code: service.CodeUnavailable},
		{name: "other error", err: errors.New("lua script: WRONGTYPE detail-xyz"), status: http.StatusInternalServerError, code: service.CodeInternal},
		{name: "no results", results: func([]store.NewMessage) []store.EnqueueResult { return nil }, status: http.StatusInternalServerError, code: service.CodeInternal},
		{name: "unknown outcome", results: func(m []store.NewMessage) []store.EnqueueResult {
			return []store.EnqueueResult{{Outcome: 0, ID: m[0].ID}}
		}, status: http.StatusInternalServerError, code: service.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.q.enqueueErr, e.q.results = tt.err, tt.results
			rec := e.do(t, http.MethodPost, "/v1/messages", validBody, nil)
			if got := rec.Code; got != tt.status {
				t.Fatalf("status %d, want %d (%s)", got, tt.status, rec.Body)
			}
			if got := apiError(t, rec).Code; got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
			if tt.status == http.StatusServiceUnavailable {
				if got := rec.Header().Get("Retry-After"); got != "1" {
					t.Errorf("Retry-After = %q, want 1", got)
				}
			}
			if tt.err != nil {
				for _, secret := range []string{"detail-xyz", "10.0.0.1", "redis"} {
					if strings.Contains(rec.Body.String(), secret) {
						t.Errorf("body %s leaks %q", rec.Body, secret)
					}
				}
				if !strings.Contains(e.logs.String(), tt.err.Error()) {
					t.Errorf("logs lack the error %q: %s", tt.err, e.logs)
				}
			}
		})
	}
}

func TestGetMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rec := e.do(t, http.MethodPost, "/v1/messages", withField("template_id", `"t<&>"`), nil)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST: status %d (%s)", rec.Code, rec.Body)
	}

	t.Run("found", func(t *testing.T) {
		rec := e.do(t, http.MethodGet, "/v1/messages/msg-1", "", nil)
		if got := rec.Code; got != http.StatusOK {
			t.Fatalf("status %d, want 200 (%s)", got, rec.Body)
		}
		var got service.Message
		decode(t, rec, &got)
		want := service.Message{
			ID: "msg-1", App: "default", ToUser: "oUser_01-x", TemplateID: "t<&>",
			Status: service.StatusQueued, CreatedAt: fixedNow(), UpdatedAt: fixedNow(),
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("message %+v, want %+v", got, want)
		}
		if !strings.Contains(rec.Body.String(), `"template_id":"t<&>"`) {
			t.Errorf("body %s: HTML characters escaped, want them verbatim", rec.Body)
		}
	})

	tests := []struct {
		name   string
		path   string
		err    error
		status int
		code   string
	}{
		{name: "unknown id", path: "/v1/messages/msg-999", status: http.StatusNotFound, code: service.CodeNotFound},
		{name: "id with a dot", path: "/v1/messages/msg.1", status: http.StatusNotFound, code: service.CodeNotFound},
		{name: "id too long", path: "/v1/messages/" + strings.Repeat("a", 65), status: http.StatusNotFound, code: service.CodeNotFound},
		{name: "store unavailable", path: "/v1/messages/msg-1", err: errUnavailable(), status: http.StatusServiceUnavailable, code: service.CodeUnavailable},
		{name: "store error", path: "/v1/messages/msg-1", err: errors.New("boom"), status: http.StatusInternalServerError, code: service.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.q.getErr = tt.err
			rec := e.do(t, http.MethodGet, tt.path, "", nil)
			if got := rec.Code; got != tt.status {
				t.Fatalf("GET %.80s: status %d, want %d (%s)", tt.path, got, tt.status, rec.Body)
			}
			if got := apiError(t, rec).Code; got != tt.code {
				t.Errorf("code %q, want %q", got, tt.code)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		name, method, path string
		status             int
		code               string
		allow              string
	}{
		{name: "unknown path", method: http.MethodGet, path: "/nope", status: http.StatusNotFound, code: service.CodeNotFound},
		{name: "unknown /v1 path", method: http.MethodPost, path: "/v1/other", status: http.StatusNotFound, code: service.CodeNotFound},
		{name: "trailing slash", method: http.MethodGet, path: "/healthz/", status: http.StatusNotFound, code: service.CodeNotFound},
		{name: "GET messages", method: http.MethodGet, path: "/v1/messages", status: http.StatusMethodNotAllowed, code: service.CodeMethodNotAllowed, allow: "POST"},
		{name: "DELETE message", method: http.MethodDelete, path: "/v1/messages/msg-1", status: http.StatusMethodNotAllowed, code: service.CodeMethodNotAllowed, allow: "GET"},
		{name: "POST healthz", method: http.MethodPost, path: "/healthz", status: http.StatusMethodNotAllowed, code: service.CodeMethodNotAllowed, allow: "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(t, tt.method, tt.path, "", nil)
			if got := rec.Code; got != tt.status {
				t.Fatalf("%s %s: status %d, want %d (%s)", tt.method, tt.path, got, tt.status, rec.Body)
			}
			if got := apiError(t, rec).Code; got != tt.code {
				t.Errorf("%s %s: code %q, want %q", tt.method, tt.path, got, tt.code)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
			}
		})
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		path     string
		pingErr  error
		warnings []string
		status   int
		body     string
	}{
		{name: "healthz", path: "/healthz", status: http.StatusOK, body: `{"status":"ok"}`},
		{name: "healthz with the store down", path: "/healthz", pingErr: errUnavailable(), status: http.StatusOK, body: `{"status":"ok"}`},
		{name: "ready", path: "/readyz", status: http.StatusOK, body: `{"status":"ready"}`},
		{name: "not ready", path: "/readyz", pingErr: errUnavailable(), status: http.StatusServiceUnavailable, body: `{"status":"unavailable"}`},
		{name: "ready with a warning", path: "/readyz", warnings: []string{"store reset"}, status: http.StatusOK, body: `{"status":"ready","warnings":["store reset"]}`},
		{name: "not ready with a warning", path: "/readyz", pingErr: errUnavailable(), warnings: []string{"store reset"}, status: http.StatusServiceUnavailable, body: `{"status":"unavailable","warnings":["store reset"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Warnings = func() []string { return tt.warnings } })
			e.q.pingErr = tt.pingErr
			rec := e.do(t, http.MethodGet, tt.path, "", map[string]string{"Authorization": ""})
			if got := rec.Code; got != tt.status {
				t.Errorf("GET %s: status %d, want %d", tt.path, got, tt.status)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tt.body {
				t.Errorf("GET %s: body %s, want %s", tt.path, got, tt.body)
			}
		})
	}
}

func TestMetricsUseRouteTemplates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.do(t, http.MethodPost, "/v1/messages", validBody, nil)
	e.do(t, http.MethodGet, "/v1/messages/raw-id-7f3a", "", nil)
	e.do(t, http.MethodGet, "/raw-path-9c2e", "", nil)
	rec := e.do(t, http.MethodGet, "/metrics", "", map[string]string{"Authorization": ""})
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`wxpush_http_requests_total{code="202",route="/v1/messages"} 1`,
		`wxpush_http_requests_total{code="404",route="/v1/messages/:id"} 1`,
		`wxpush_http_requests_total{code="404",route="unmatched"} 1`,
		`wxpush_http_request_duration_seconds_count{route="/v1/messages"} 1`,
		`wxpush_messages_accepted_total{app="default"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, raw := range []string{"raw-id-7f3a", "raw-path-9c2e"} {
		if strings.Contains(body, raw) {
			t.Errorf("/metrics contains the raw path %q", raw)
		}
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	generated := regexp.MustCompile(`^[0-9a-f]{16}$`)
	tests := []struct {
		name     string
		incoming string
		keep     bool
	}{
		{name: "kept", incoming: "req-123_abc.DEF", keep: true},
		{name: "64 characters kept", incoming: strings.Repeat("r", 64), keep: true},
		{name: "absent", incoming: ""},
		{name: "too long", incoming: strings.Repeat("r", 65)},
		{name: "unsafe characters", incoming: `<script>"x"`},
		{name: "spaces", incoming: "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			hdr := map[string]string{}
			if tt.incoming != "" {
				hdr[service.HeaderRequestID] = tt.incoming
			}
			rec := e.do(t, http.MethodPost, "/v1/messages", validBody, hdr)
			got := rec.Header().Get(service.HeaderRequestID)
			if tt.keep && got != tt.incoming {
				t.Errorf("X-Request-Id %q answered %q, want it kept", tt.incoming, got)
			}
			if !tt.keep && !generated.MatchString(got) {
				t.Errorf("X-Request-Id %q answered %q, want 16 generated hex digits", tt.incoming, got)
			}
			if !strings.Contains(e.logs.String(), `"request_id":"`+got+`"`) {
				t.Errorf("access log lacks request_id %q: %s", got, e.logs)
			}
		})
	}
	t.Run("generated ids differ", func(t *testing.T) {
		e := newEnv(t, nil)
		a := e.do(t, http.MethodGet, "/healthz", "", nil).Header().Get(service.HeaderRequestID)
		b := e.do(t, http.MethodGet, "/healthz", "", nil).Header().Get(service.HeaderRequestID)
		if a == b {
			t.Errorf("two requests got the same id %q", a)
		}
	})
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.do(t, http.MethodGet, "/v1/messages/msg-404", "", map[string]string{service.HeaderRequestID: "rid-1"})
	logs := e.logs.String()
	for _, want := range []string{`"msg":"http request"`, `"method":"GET"`, `"route":"/v1/messages/:id"`, `"status":404`, `"duration":`, `"request_id":"rid-1"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s: %s", want, logs)
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.q.panicMsg = "fake queue exploded"
	rec := e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{service.HeaderRequestID: "rid-panic"})
	if got := rec.Code; got != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500 (%s)", got, rec.Body)
	}
	if got := apiError(t, rec).Code; got != service.CodeInternal {
		t.Errorf("code %q, want %q", got, service.CodeInternal)
	}
	if strings.Contains(rec.Body.String(), "exploded") {
		t.Errorf("body %s leaks the panic", rec.Body)
	}
	if got := rec.Header().Get(service.HeaderRequestID); got != "rid-panic" {
		t.Errorf("X-Request-Id = %q, want rid-panic", got)
	}
	logs := e.logs.String()
	for _, want := range []string{"fake queue exploded", `"status":500`, `"stack":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s: %s", want, logs)
		}
	}
	// The handler still serves.
	e.q.mu.Lock()
	e.q.panicMsg = ""
	e.q.mu.Unlock()
	if got := e.do(t, http.MethodPost, "/v1/messages", validBody, nil).Code; got != http.StatusAccepted {
		t.Errorf("after a panic: status %d, want 202", got)
	}
}

func TestSecretsStayOutOfLogsAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	wrong := "Bearer wrong-secret-0b9e7d"
	e.do(t, http.MethodPost, "/v1/messages", validBody, nil)
	e.do(t, http.MethodPost, "/v1/messages", validBody, map[string]string{"Authorization": wrong})
	e.do(t, http.MethodPost, "/v1/messages/batch", `{"messages":[`+validBody+`]}`, nil)
	e.do(t, http.MethodGet, "/v1/messages/msg-1", "", nil)
	e.do(t, http.MethodGet, "/nope", "", nil)
	e.q.enqueueErr = errors.New("boom")
	e.do(t, http.MethodPost, "/v1/messages", validBody, nil)
	metrics := e.do(t, http.MethodGet, "/metrics", "", nil).Body.String()
	logs := e.logs.String()
	if !strings.Contains(logs, "http request") {
		t.Fatalf("no access log captured: %q", logs)
	}
	for where, text := range map[string]string{"logs": logs, "/metrics": metrics} {
		for _, secret := range []string{testKey, "wrong-secret-0b9e7d", "Authorization", "Bearer", "hello"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contain %q", where, secret)
			}
		}
	}
}

func TestExtraRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) {
		o.Extra = func(r *gin.Engine) {
			r.GET("/wechat/callback/:app", func(c *gin.Context) { c.String(http.StatusOK, "success") })
		}
	})
	rec := e.do(t, http.MethodGet, "/wechat/callback/default", "", map[string]string{"Authorization": ""})
	if got := rec.Code; got != http.StatusOK || rec.Body.String() != "success" {
		t.Errorf("extra route: status %d body %q, want 200 success", got, rec.Body)
	}
	if got := rec.Header().Get(service.HeaderRequestID); got == "" {
		t.Errorf("extra route: no X-Request-Id, want the middleware applied")
	}
	metrics := e.do(t, http.MethodGet, "/metrics", "", nil).Body.String()
	if want := `wxpush_http_requests_total{code="200",route="/wechat/callback/:app"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}
