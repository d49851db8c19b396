package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testAppID  = "wx1234567890abcdef"
	testSecret = Secret("s3cr3t-appsecret-value")
	testToken  = Secret("81_tok3n-VALUE-that-must-not-leak")
)

func newTestClient(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, srv.Client())
	require.NoError(t, err)
	return c
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_, _ = io.WriteString(w, body)
}

func TestClientToken(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, http.MethodGet, r.Method)
		assert.Equal(t, PathToken, r.URL.Path)
		q := r.URL.Query()
		assert.Equal(t, "client_credential", q.Get("grant_type"))
		assert.Equal(t, testAppID, q.Get("appid"))
		assert.Equal(t, testSecret.Reveal(), q.Get("secret"))
		writeJSON(w, `{"access_token":"`+testToken.Reveal()+`","expires_in":7200}`)
	})
	tok, err := c.Token(t.Context(), testAppID, testSecret)
	require.NoError(t, err)
	assert.Equal(t, testToken.Reveal(), tok.AccessToken.Reveal())
	assert.Equal(t, 2*time.Hour, tok.ExpiresIn)
}

func TestClientStableToken(t *testing.T) {
	for _, force := range []bool{false, true} {
		c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			assert.Equal(t, http.MethodPost, r.Method)
			assert.Equal(t, PathStableToken, r.URL.Path)
			assert.Empty(t, r.URL.RawQuery, "the stable token secret travels in the body")
			var req StableTokenRequest
			require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
			assert.Equal(t, StableTokenRequest{GrantType: "client_credential", AppID: testAppID, Secret: testSecret.Reveal(), ForceRefresh: force}, req)
			writeJSON(w, `{"access_token":"stable","expires_in":4000}`)
		})
		tok, err := c.StableToken(t.Context(), testAppID, testSecret, force)
		require.NoError(t, err)
		assert.Equal(t, 4000*time.Second, tok.ExpiresIn)
	}
}

func TestClientSendTemplate(t *testing.T) {
	msg := &TemplateMessage{
		ToUser: "oUser", TemplateID: "tpl1", URL: "https://example.com/a?b=1&c=<d>",
		MiniProgram: &MiniProgram{AppID: "wxmini", PagePath: "index?foo=bar"},
		ClientMsgID: "wxp-01HZZZ",
		Data:        map[string]DataItem{"thing1": {Value: "巧克力 & <糖>"}, "amount2": {Value: "39.8元", Color: "#173177"}},
	}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, PathTemplateSend, r.URL.Path)
		assert.Equal(t, testToken.Reveal(), r.URL.Query().Get("access_token"))
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		body, _ := io.ReadAll(r.Body)
		assert.NotContains(t, string(body), `\u0026`, "JSON must not HTML-escape")
		assert.NotContains(t, string(body), `\u003c`)
		assert.Contains(t, string(body), `"client_msg_id":"wxp-01HZZZ"`)
		var got TemplateMessage
		require.NoError(t, json.Unmarshal(body, &got))
		assert.Equal(t, *msg, got)
		writeJSON(w, `{"errcode":0,"errmsg":"ok","msgid":3717005636572528642}`)
	})
	id, err := c.SendTemplate(t.Context(), testToken, msg)
	require.NoError(t, err)
	assert.Equal(t, int64(3717005636572528642), id, "msgid above 2^53 must survive")
}

func TestClientErrcodeClasses(t *testing.T) {
	tests := []struct {
		code int
		want Class
	}{
		{-1, ClassRetry},
		{40001, ClassTokenInvalid},
		{40014, ClassTokenInvalid},
		{42001, ClassTokenInvalid},
		{45011, ClassPace},
		{45009, ClassQuota},
		{40003, ClassPermanentMessage},
		{43004, ClassPermanentMessage},
		{47003, ClassPermanentMessage},
		{48001, ClassPermanentApp},
		{40164, ClassPermanentApp},
		{77777, ClassPermanentMessage},
	}
	for _, tt := range tests {
		t.Run(Lookup(tt.code).ErrMsg, func(t *testing.T) {
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := json.Marshal(Response{ErrCode: tt.code, ErrMsg: Lookup(tt.code).ErrMsg + " rid: 6337c0e2-19cada87-15edcde8"})
				writeJSON(w, string(b))
			})
			_, err := c.SendTemplate(t.Context(), testToken, &TemplateMessage{ToUser: "o", TemplateID: "t"})
			require.Error(t, err)
			var we *Error
			require.True(t, errors.As(err, &we), "got %T %v", err, err)
			assert.Equal(t, tt.code, we.Code)
			assert.Equal(t, APITemplateSend, we.API)
			assert.Contains(t, we.Msg, "rid: 6337c0e2")
			assert.Equal(t, tt.want, Classify(err), "Classify(errcode %d)", tt.code)
		})
	}
}

func TestClientTokenEndpointErrors(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, `{"errcode":40125,"errmsg":"invalid appsecret rid: 1-2-3"}`)
	})
	_, err := c.Token(t.Context(), testAppID, testSecret)
	assert.True(t, PermanentForApp(err), "bad secret stops the app: %v", err)
	_, err = c.StableToken(t.Context(), testAppID, testSecret, false)
	assert.True(t, PermanentForApp(err))
}

// hang answers nothing until the client gives up. The server notices a
// client's disconnect only once the request body is consumed, so drain it
// first; the timer bounds the handler should the client never give up.
func hang(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// failures returns one handler per way a call can fail without an errcode.
func failures() map[string]struct {
	handler http.HandlerFunc
	kind    CallKind
	class   Class
} {
	return map[string]struct {
		handler http.HandlerFunc
		kind    CallKind
		class   Class
	}{
		"malformed JSON":   {func(w http.ResponseWriter, r *http.Request) { writeJSON(w, `{"errcode":0,"msgid":`) }, CallMalformed, ClassRetry},
		"empty body":       {func(w http.ResponseWriter, r *http.Request) {}, CallMalformed, ClassRetry},
		"HTML error page":  {func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>502</html>") }, CallMalformed, ClassRetry},
		"wrong JSON types": {func(w http.ResponseWriter, r *http.Request) { writeJSON(w, `{"errcode":"x"}`) }, CallMalformed, ClassRetry},
		"HTTP 500":         {func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, CallHTTPStatus, ClassRetry},
		"HTTP 503":         {func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, CallHTTPStatus, ClassRetry},
		"connection reset": {func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				_ = conn.Close()
			}
		}, CallTransport, ClassRetry},
		"timeout": {hang, CallTimeout, ClassRetry},
	}
}

func TestClientCallFailures(t *testing.T) {
	for name, f := range failures() {
		t.Run(name, func(t *testing.T) {
			c := newTestClient(t, f.handler)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			_, err := c.SendTemplate(ctx, testToken, &TemplateMessage{ToUser: "o", TemplateID: "t"})
			var ce *CallError
			require.True(t, errors.As(err, &ce), "got %T %v", err, err)
			assert.Equal(t, f.kind, ce.Kind, "kind for %s: %v", name, err)
			assert.Equal(t, f.class, Classify(err))
			assert.True(t, Ambiguous(err), "%s: WeChat may have processed the send", name)
			assert.Equal(t, APITemplateSend, ce.API)
		})
	}
}

func TestClientHTTPClientTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(hang))
	t.Cleanup(srv.Close)
	hc := srv.Client()
	hc.Timeout = 100 * time.Millisecond
	c, err := NewClient(srv.URL, hc)
	require.NoError(t, err)
	_, err = c.Token(t.Context(), testAppID, testSecret)
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, CallTimeout, ce.Kind)
	assert.True(t, Retryable(err))
}

func TestClientConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := NewClient("http://"+addr, nil)
	require.NoError(t, err)
	_, err = c.SendTemplate(t.Context(), testToken, &TemplateMessage{})
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, CallTransport, ce.Kind)
	assertNoSecret(t, err)
}

// TestClientErrorsNeverLeakSecrets drives every failure path of every call
// and checks that neither the error text nor a log line of it holds the
// appsecret or the access_token.
func TestClientErrorsNeverLeakSecrets(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"errcode": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"errcode":40001,"errmsg":"invalid credential"}`)
		},
	}
	for name, f := range failures() {
		handlers[name] = f.handler
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			c := newTestClient(t, h)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			_, err1 := c.Token(ctx, testAppID, testSecret)
			_, err2 := c.StableToken(ctx, testAppID, testSecret, true)
			_, err3 := c.SendTemplate(ctx, testToken, &TemplateMessage{ToUser: "o", TemplateID: "t"})
			err4 := c.ClearQuota(ctx, testToken, testAppID)
			for _, err := range []error{err1, err2, err3, err4} {
				require.Error(t, err)
				assertNoSecret(t, err)
			}
		})
	}
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Error("call failed", "err", err, "token", testToken, "secret", testSecret)
	slog.New(slog.NewJSONHandler(&logs, nil)).Error("call failed", "err", err, "token", testToken, "secret", testSecret)
	for _, s := range []string{err.Error(), sprint(err), logs.String()} {
		assert.NotContains(t, s, testSecret.Reveal(), "appsecret leaked")
		assert.NotContains(t, s, testToken.Reveal(), "access_token leaked")
		assert.NotContains(t, s, "access_token=", "request URL leaked")
	}
}

func TestNewClientValidation(t *testing.T) {
	for _, bad := range []string{"ftp://x", "api.weixin.qq.com", "http://", "://"} {
		_, err := NewClient(bad, nil)
		assert.Error(t, err, "NewClient(%q)", bad)
	}
	c, err := NewClient("", nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultBaseURL, c.BaseURL())
	c, err = NewClient("http://127.0.0.1:9000/", nil)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:9000", c.BaseURL())
}

func TestClientTokenWithoutAccessToken(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, `{"expires_in":7200}`) })
	_, err := c.Token(t.Context(), testAppID, testSecret)
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, CallMalformed, ce.Kind)
}

func TestClientOversizedResponse(t *testing.T) {
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, `{"errmsg":"`+strings.Repeat("a", maxResponseBytes)+`"}`)
	})
	_, err := c.SendTemplate(t.Context(), testToken, &TemplateMessage{})
	var ce *CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, CallMalformed, ce.Kind)
}
