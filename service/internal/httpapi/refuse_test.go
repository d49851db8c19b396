package httpapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/service"
)

// TestControlCharactersRefused: NUL, other C0 control characters (but tab
// and newline) and bidi overrides in any string field are a 400 naming
// the field, and nothing is stored. Tab and newline in a value pass.
func TestControlCharactersRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const full = `{"app":"default","touser":"oUser_01-x","template_id":"tmpl-1","url":"https://example.com/a",` +
		`"miniprogram":{"appid":"wx_123","pagepath":"pages/a"},"data":{"thing1":{"value":"hello","color":"#FF0000"}}}`
	tests := []struct {
		name, from, to, field string
	}{
		{"NUL in touser", `"oUser_01-x"`, `"oUser\u0000x"`, "touser"},
		{"NUL in app", `"app":"default"`, `"app":"def\u0000ault"`, "app"},
		{"ESC in template_id", `"tmpl-1"`, `"tmpl\u001b1"`, "template_id"},
		{"RLO in template_id", `"tmpl-1"`, `"tmpl\u202e1"`, "template_id"},
		{"CR in url", `"https://example.com/a"`, `"https://example.com/a\r"`, "url"},
		{"LRI in url", `"https://example.com/a"`, `"https://example.com/\u2066a"`, "url"},
		{"NUL in miniprogram.appid", `"wx_123"`, `"wx\u0000123"`, "miniprogram.appid"},
		{"RLO in miniprogram.pagepath", `"pages/a"`, `"pages/\u202ea"`, "miniprogram.pagepath"},
		{"NUL in a data key", `"thing1"`, `"thing\u00001"`, "data"},
		{"LRE in a data key", `"thing1"`, `"thing\u202a1"`, "data"},
		{"NUL in a value", `"hello"`, `"hel\u0000lo"`, "data.thing1.value"},
		{"BEL in a value", `"hello"`, `"hel\u0007lo"`, "data.thing1.value"},
		{"CR in a value", `"hello"`, `"hello\r\n"`, "data.thing1.value"},
		{"RLO in a value", `"hello"`, `"\u202eolleh"`, "data.thing1.value"},
		{"PDF in a value", `"hello"`, `"hello\u202c"`, "data.thing1.value"},
		{"PDI in a value", `"hello"`, `"hello\u2069"`, "data.thing1.value"},
		{"raw RLO byte sequence in a value", `"hello"`, "\"hel\u202elo\"", "data.thing1.value"},
		{"US in a color", `"#FF0000"`, `"#FF0000\u001f"`, "data.thing1.color"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(full, tt.from, tt.to, 1)
			if body == full {
				t.Fatalf("bad test: %q not in the body", tt.from)
			}
			before := len(e.q.enqueued())
			rec := e.do(t, http.MethodPost, "/v1/messages", body, nil)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("body %s: status %d, want 400 (%s)", body, rec.Code, rec.Body)
			}
			got := apiError(t, rec)
			if got.Field != tt.field || !strings.Contains(got.Message, "control characters") {
				t.Errorf("body %s: error %+v, want field %q and a message about control characters", body, got, tt.field)
			}
			if n := len(e.q.enqueued()); n != before {
				t.Errorf("body %s: %d messages stored", body, n-before)
			}
			// The same item in a batch is that item's error.
			rec = e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(validBody, body), nil)
			var br service.BatchResponse
			decode(t, rec, &br)
			if rec.Code != http.StatusMultiStatus || len(br.Results) != 2 || br.Results[1].Error == nil || br.Results[1].Error.Field != "messages[1]."+tt.field {
				t.Errorf("batch: status %d, body %s; want 207 with messages[1].%s refused", rec.Code, rec.Body, tt.field)
			}
		})
	}
	t.Run("tab and newline pass", func(t *testing.T) {
		body := strings.Replace(full, `"hello"`, `"line 1\nline\t2 \u200f"`, 1)
		if rec := e.do(t, http.MethodPost, "/v1/messages", body, nil); rec.Code != http.StatusAccepted {
			t.Errorf("status %d, want 202 (%s)", rec.Code, rec.Body)
		}
	})
	t.Run("batch idempotency_key", func(t *testing.T) {
		rec := e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(validBody, withKey(validBody, `k\u0000`)), nil)
		var br service.BatchResponse
		decode(t, rec, &br)
		if len(br.Results) != 2 || br.Results[1].Error == nil || br.Results[1].Error.Field != "messages[1].idempotency_key" ||
			!strings.Contains(br.Results[1].Error.Message, "control characters") {
			t.Errorf("body %s: want messages[1].idempotency_key refused for its control character", rec.Body)
		}
	})
}

// TestDuplicateKeysRefused: a key given twice in one object of a request
// (as encoding/json would match it: field names case-insensitively, data
// keys exactly) is a 400 naming the key; nothing is stored.
func TestDuplicateKeysRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		name, body, field string
	}{
		{"touser twice", `{"touser":"a","touser":"b","template_id":"t","data":{"k":{"value":"v"}}}`, "touser"},
		{"touser in another case", `{"touser":"a","TOUSER":"b","template_id":"t","data":{"k":{"value":"v"}}}`, "TOUSER"},
		{"touser escaped", `{"touser":"a","\u0074ouser":"b","template_id":"t","data":{"k":{"value":"v"}}}`, "touser"},
		{"template_id twice", `{"touser":"a","template_id":"t","template_id":"u","data":{"k":{"value":"v"}}}`, "template_id"},
		{"touser with a long s (encoding/json folds it)", `{"touser":"a","tou\u017fer":"b","template_id":"t","data":{"k":{"value":"v"}}}`, "tou\u017fer"},
		{"data twice", `{"touser":"a","template_id":"t","data":{"k":{"value":"v"}},"data":{"j":{"value":"w"}}}`, "data"},
		{"a data key twice", `{"touser":"a","template_id":"t","data":{"k":{"value":"v"},"k":{"value":"w"}}}`, "data.k"},
		{"value twice", `{"touser":"a","template_id":"t","data":{"k":{"value":"v","value":"w"}}}`, "data.k.value"},
		{"appid twice", `{"touser":"a","template_id":"t","miniprogram":{"appid":"x","APPID":"y"},"data":{"k":{"value":"v"}}}`, "miniprogram.APPID"},
		{"many keys, the last repeated", `{"touser":"a","template_id":"t","data":{` + manyKeys(30) + `,"k3":{"value":"w"}}}`, "data.k3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(t, http.MethodPost, "/v1/messages", tt.body, nil)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("body %s: status %d, want 400 (%s)", tt.body, rec.Code, rec.Body)
			}
			if got := apiError(t, rec); got.Field != tt.field || !strings.Contains(got.Message, "duplicate key") {
				t.Errorf("body %s: error %+v, want a duplicate key error on %q", tt.body, got, tt.field)
			}
			rec = e.do(t, http.MethodPost, "/v1/messages/batch", batchOf(validBody, tt.body), nil)
			var br service.BatchResponse
			decode(t, rec, &br)
			if len(br.Results) != 2 || br.Results[1].Error == nil || br.Results[1].Error.Field != "messages[1]."+tt.field {
				t.Errorf("batch: body %s; want messages[1].%s refused", rec.Body, tt.field)
			}
		})
	}
	if n := len(e.q.enqueued()); n != len(tests) {
		t.Errorf("%d messages stored, want %d (the valid batch items only)", n, len(tests))
	}
	t.Run("distinct data keys in other cases pass", func(t *testing.T) {
		body := `{"touser":"a","template_id":"t","data":{"k":{"value":"v"},"K":{"value":"w"}}}`
		if rec := e.do(t, http.MethodPost, "/v1/messages", body, nil); rec.Code != http.StatusAccepted {
			t.Errorf("status %d, want 202 (%s)", rec.Code, rec.Body)
		}
	})
	t.Run("batch envelope", func(t *testing.T) {
		body := `{"messages":[` + validBody + `],"messages":[` + validBody + `]}`
		rec := e.do(t, http.MethodPost, "/v1/messages/batch", body, nil)
		if got := apiError(t, rec); rec.Code != http.StatusBadRequest || got.Field != "messages" {
			t.Errorf("status %d, error %+v; want 400 naming messages", rec.Code, got)
		}
	})
}

// manyKeys returns n distinct data entries k0..k(n-1).
func manyKeys(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":{"value":"v"}`, i)
	}
	return strings.Join(parts, ",")
}

// TestMalformedRequestsAnswerJSON: requests net/http itself refuses (a
// malformed escape in the path, a space in it, a bad header) and paths
// the router does not know are all answered with the JSON error body.
// It talks raw HTTP to a server on WrapListener, as wxpushd serves.
func TestMalformedRequestsAnswerJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	srv := httptest.NewUnstartedServer(e.h)
	srv.Listener = WrapListener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	tests := []struct {
		name, request string
		status        int
	}{
		{"bad escape", "GET /v1/messages/%zz HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"short escape", "GET /v1/messages/%2 HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"space in the path", "GET /v1/messages/a b HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadRequest},
		{"no Host", "GET /v1/messages/a HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"malformed header", "GET /v1/messages/a HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", http.StatusBadRequest},
		{"headers too large", "GET /v1/messages/a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20+4096) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"escaped NUL", "GET /nope%00 HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound},
		{"escaped percent", "GET /nope/%25zz HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound},
		{"asterisk", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound},
		{"unknown route", "GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() { _, _ = io.WriteString(c, tt.request) }() // the server may answer before it has read it all
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%q: %v", tt.request[:min(len(tt.request), 60)], err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON (body %q)", ct, body)
			}
			var er service.ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil || er.Error.Code == "" || er.Error.Message == "" {
				t.Errorf("body %q is not an API error", body)
			}
		})
	}
}
