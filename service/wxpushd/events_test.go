package wxpushd

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/webhook"
)

const eventSecret = wechat.Secret("event-webhook-secret-0123456789")

// TestInboundEvents: a subscribe push to wxpushd (safe mode) is answered
// with the configured welcome, sealed; it reaches the event webhook signed
// under a stable delivery id; GET /v1/apps/{app}/users/{openid} shows the
// user following, then not after an unsubscribe; and a send to them then
// fails as not_following without reaching WeChat.
func TestInboundEvents(t *testing.T) {
	r := redistest.New(t)
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	var mu sync.Mutex
	var got []service.InboundEvent
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if !webhook.Verify(eventSecret, req.Header.Get(service.HeaderWebhookTimestamp), body, req.Header.Get(service.HeaderWebhookSignature)) {
			t.Errorf("event webhook: bad signature over %s", body)
		}
		var ev service.InboundEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.ID != req.Header.Get(service.HeaderWebhookDeliveryID) {
			t.Errorf("event webhook: body %s, id header %q: %v", body, req.Header.Get(service.HeaderWebhookDeliveryID), err)
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	cfg := testConfig(mock, r)
	cfg.Apps[0].CallbackToken = mockwx.DemoCallbackToken
	cfg.Apps[0].EncodingAESKey = mockwx.DemoEncodingAESKey
	cfg.Apps[0].EventWebhookURL, cfg.Apps[0].EventWebhookSecret = hook.URL, eventSecret
	cfg.Apps[0].Replies = apps.Replies{{On: "subscribe", Text: "Welcome!"}}
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}
	cr, err := wechat.NewCrypter(wechat.CrypterConfig{Token: mockwx.DemoCallbackToken, AppID: mock.App.AppID, EncodingAESKey: mockwx.DemoEncodingAESKey})
	require.NoError(t, err)
	const user = "oUser-events-0000000000001"
	push := func(event string, at time.Time) *http.Response {
		msg := &wechat.Message{ToUserName: "gh_0123456789ab", FromUserName: user, CreateTime: at.Unix(), MsgType: wechat.MsgTypeEvent, Event: event}
		q, body, err := cr.SealCallback(msg, wechat.ModeSafe, time.Now().Unix(), strconv.FormatInt(at.UnixNano(), 10))
		require.NoError(t, err)
		resp, err := http.Post(in.URL()+"/wechat/callback/default?"+q.Encode(), "text/xml", bytes.NewReader(body))
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}

	code, body, _ := a.do(http.MethodGet, "/v1/apps/default/users/"+user, nil, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.JSONEq(t, `{"app":"default","openid":"`+user+`","following":null,"since":null,"source":null,"last_event":null,"last_event_at":null}`, string(body))

	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	resp := push("subscribe", t0)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var sealed wechat.EncryptedReply
	require.NoError(t, xml.NewDecoder(resp.Body).Decode(&sealed))
	plain, err := cr.OpenReply(&sealed)
	require.NoError(t, err)
	require.Contains(t, string(plain), "<Content><![CDATA[Welcome!]]></Content>")

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 10*time.Second, 10*time.Millisecond)
	code, body, _ = a.do(http.MethodGet, "/v1/apps/default/users/"+user, nil, nil)
	require.Equal(t, http.StatusOK, code)
	var st service.UserState
	require.NoError(t, json.Unmarshal(body, &st))
	require.NotNil(t, st.Following)
	require.True(t, *st.Following)
	require.Equal(t, "event", *st.Source)
	require.Equal(t, t0.Unix(), st.Since.Unix())
	require.Equal(t, "subscribe", *st.LastEvent)

	resp = push("unsubscribe", t0.Add(time.Second))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, "success", string(b))
	code, body, _ = a.do(http.MethodGet, "/v1/apps/default/users/"+user, nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &st))
	require.False(t, *st.Following)

	id := a.send(order(user), "")
	msg := a.waitStatus(id, service.StatusFailed, 10*time.Second)
	require.Equal(t, service.ReasonNotFollowing, msg.Reason)
	stats, err := mock.Admin.Stats(t.Context())
	require.NoError(t, err)
	require.Zero(t, stats.SendCalls, "no quota spent")

	code, _, _ = a.do(http.MethodGet, "/v1/apps/nope/users/"+user, nil, nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = a.do(http.MethodGet, "/v1/apps/default/users/bad%20id", nil, nil)
	require.Equal(t, http.StatusBadRequest, code)
	code, _, _ = api{t: t, base: in.URL()}.do(http.MethodGet, "/v1/apps/default/users/"+user, nil, nil)
	require.Equal(t, http.StatusUnauthorized, code)

	mu.Lock()
	defer mu.Unlock()
	require.Eventually(t, func() bool { return len(got) >= 1 }, time.Second, 10*time.Millisecond)
	require.Equal(t, "subscribe", got[0].Type)
	logs := in.logs.String()
	for _, secret := range []string{eventSecret.Reveal(), mockwx.DemoCallbackToken, mockwx.DemoEncodingAESKey} {
		require.NotContains(t, logs, secret)
	}
}
