package mockwx_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// receiver is a callback endpoint that verifies every push with
// internal/wechat and records what it opened.
type receiver struct {
	t       *testing.T
	crypter *wechat.Crypter
	mu      sync.Mutex
	got     []*wechat.Message
	queries []map[string][]string
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m, err := rv.crypter.OpenCallback(r.URL.Query(), body)
	if err != nil {
		rv.t.Errorf("callback did not verify: %v (query %s, body %s)", err, r.URL.RawQuery, body)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	rv.mu.Lock()
	rv.got = append(rv.got, m)
	rv.queries = append(rv.queries, r.URL.Query())
	rv.mu.Unlock()
	_, _ = io.WriteString(w, "success")
}

func (rv *receiver) messages() []*wechat.Message {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]*wechat.Message(nil), rv.got...)
}

func callbackEnv(t *testing.T, mode wechat.Mode) (*mockwxtest.Server, *receiver) {
	t.Helper()
	app := mockwx.DemoApp()
	crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: app.CallbackToken, AppID: app.AppID, EncodingAESKey: app.EncodingAESKey})
	require.NoError(t, err)
	rv := &receiver{t: t, crypter: crypter}
	hs := httptest.NewServer(rv)
	t.Cleanup(hs.Close)
	cfg := mockwx.ApplyEnv(mockwx.Config{Settings: mockwx.Settings{CallbackDelayMS: 1}}, func(k string) string {
		return map[string]string{mockwx.EnvCallbackURL: hs.URL + "/wechat/callback/default", mockwx.EnvCallbackMode: string(mode)}[k]
	})
	return mockwxtest.NewServer(t, mockwxtest.Options{Config: cfg, Seed: 1}), rv
}

func TestCallbacksInEveryMode(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			s, rv := callbackEnv(t, mode)
			wc := s.WeChat()
			ctx := t.Context()
			tok, err := wc.Token(ctx, s.App.AppID, wechat.Secret(s.App.Secret))
			require.NoError(t, err)
			okID, err := wc.SendTemplate(ctx, tok.AccessToken, validOrder("oUser-callback-0001"))
			require.NoError(t, err)
			blockedID, err := wc.SendTemplate(ctx, tok.AccessToken, validOrder(mockwx.DemoBlocked))
			require.NoError(t, err, "a blocked user's send is accepted")
			ruled, err := mockwx.ParseRule([]byte(`{"endpoint":"callback","match":{"touser":"oUser-callback-0003"},"delivery_status":"failed: system failed"}`))
			require.NoError(t, err)
			_, err = s.Admin.AddFault(ctx, ruled)
			require.NoError(t, err)
			failedID, err := wc.SendTemplate(ctx, tok.AccessToken, validOrder("oUser-callback-0003"))
			require.NoError(t, err)

			require.NoError(t, s.Mock.WaitCallbacks(ctxTimeout(t, 10*time.Second)))
			status := map[int64]string{}
			for _, m := range rv.messages() {
				assert.Equal(t, wechat.EventTemplateSendJobFinish, m.Event)
				assert.Equal(t, wechat.MsgTypeEvent, m.MsgType)
				assert.Equal(t, mockwx.DemoOriginalID, m.ToUserName)
				status[m.MsgID] = m.Status
			}
			assert.Equal(t, map[int64]string{
				okID: wechat.StatusSuccess, blockedID: wechat.StatusUserBlock, failedID: wechat.StatusSystemFailed,
			}, status)
			for _, q := range rv.queries {
				assert.NotEmpty(t, q["openid"])
				if mode == wechat.ModePlain {
					assert.Empty(t, q["encrypt_type"])
				} else {
					assert.Equal(t, []string{"aes"}, q["encrypt_type"])
					assert.NotEmpty(t, q["msg_signature"])
				}
			}
			st, err := s.Admin.Stats(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(3), st.Callbacks.Acked)
			assert.Equal(t, int64(0), st.Callbacks.Failed)
		})
	}
}

func TestCallbackNotSentForDedupedOrRejected(t *testing.T) {
	s, rv := callbackEnv(t, wechat.ModeSafe)
	wc, ctx := s.WeChat(), t.Context()
	tok, err := wc.Token(ctx, s.App.AppID, wechat.Secret(s.App.Secret))
	require.NoError(t, err)
	m := validOrder("oUser-callback-0009")
	m.ClientMsgID = "once"
	for range 3 {
		_, err := wc.SendTemplate(ctx, tok.AccessToken, m)
		require.NoError(t, err)
	}
	_, err = wc.SendTemplate(ctx, tok.AccessToken, validOrder(mockwx.DemoNotFollowing))
	require.Error(t, err)
	require.NoError(t, s.Mock.WaitCallbacks(ctxTimeout(t, 10*time.Second)))
	assert.Len(t, rv.messages(), 1, "one report per delivered message")
}

func TestCallbackLostByRule(t *testing.T) {
	s, rv := callbackEnv(t, wechat.ModePlain)
	wc, ctx := s.WeChat(), t.Context()
	r, err := mockwx.ParseRule([]byte(`{"endpoint":"callback","fault":"timeout"}`))
	require.NoError(t, err)
	_, err = s.Admin.AddFault(ctx, r)
	require.NoError(t, err)
	tok, err := wc.Token(ctx, s.App.AppID, wechat.Secret(s.App.Secret))
	require.NoError(t, err)
	_, err = wc.SendTemplate(ctx, tok.AccessToken, validOrder("oUser-callback-0010"))
	require.NoError(t, err)
	require.NoError(t, s.Mock.WaitCallbacks(ctxTimeout(t, 10*time.Second)))
	assert.Empty(t, rv.messages())
	st, err := s.Admin.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Callbacks.Failed)
}
