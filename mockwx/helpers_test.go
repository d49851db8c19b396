package mockwx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// fakeClock is a settable clock: tests move time instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a mock with a fake clock and the demo app.
type env struct {
	*mockwxtest.Server
	clock *fakeClock
	wc    *wechat.Client
}

func newEnv(t *testing.T, cfg mockwx.Config) *env {
	t.Helper()
	clk := newClock()
	s := mockwxtest.NewServer(t, mockwxtest.Options{Config: cfg, Seed: 7, Now: clk.Now})
	return &env{Server: s, clock: clk, wc: s.WeChat()}
}

func (e *env) secret() wechat.Secret { return wechat.Secret(e.App.Secret) }

func (e *env) token(t *testing.T) wechat.Secret {
	t.Helper()
	tok, err := e.wc.Token(t.Context(), e.App.AppID, e.secret())
	require.NoError(t, err)
	return tok.AccessToken
}

// getJSON GETs path and decodes the WeChat answer.
func (e *env) getJSON(t *testing.T, path string) wechat.Response {
	t.Helper()
	resp, err := e.HTTP.Client().Get(e.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "WeChat answers errors with HTTP 200")
	var r wechat.Response
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	return r
}

// post sends a raw body to path and returns the status and body.
func (e *env) post(t *testing.T, path string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := e.HTTP.Client().Post(e.URL+path, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// sendResp posts a raw template send body with tok.
func (e *env) sendRaw(t *testing.T, tok wechat.Secret, body string) wechat.SendResponse {
	t.Helper()
	status, b := e.post(t, wechat.PathTemplateSend+"?access_token="+tok.Reveal(), []byte(body))
	require.Equal(t, http.StatusOK, status)
	var r wechat.SendResponse
	require.NoError(t, json.Unmarshal(b, &r), "body %s", b)
	return r
}

func validOrder(openid string) *wechat.TemplateMessage {
	return &wechat.TemplateMessage{
		ToUser: openid, TemplateID: "order_shipped",
		Data: map[string]wechat.DataItem{
			"thing1": {Value: "巧克力礼盒"}, "character_string2": {Value: "SO-2026-000123"},
			"time3": {Value: "2026年11月23日 15:01"}, "phrase4": {Value: "已发货"},
		},
	}
}

func codeOf(err error) int { return wechat.Code(err) }

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
