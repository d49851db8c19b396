package wxpushd

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestOperatorFindsFixesAndTracesAMessage is the operator's day: a user
// says they never got a notice; the operator finds the message by user,
// sees its timeline, redrives it, and follows it to delivery, and every
// log line about it carries the request id that created it.
func TestOperatorFindsFixesAndTracesAMessage(t *testing.T) {
	proxy := newRetryProxy(t)
	app := mockwx.DemoApp()
	app.CallbackURL = proxy.srv.URL + "/wechat/callback/default"
	app.CallbackMode = wechat.ModeSafe
	mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 7, Config: mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{app}}})
	cfg := testConfig(mock, redistest.New(t))
	cfg.Apps[0].CallbackToken = mockwx.DemoCallbackToken
	cfg.Apps[0].EncodingAESKey = mockwx.DemoEncodingAESKey
	in := startInstance(t, cfg)
	target := in.URL()
	proxy.target.Store(&target)
	a := api{t: t, base: in.URL(), key: testAPIKey}

	// Two unhappy users: WeChat fails one's notice in its delivery report,
	// and answers -1 to every attempt for the other.
	reported, busy := openid(501), openid(502)
	addRule(t, mock, `{"endpoint":"callback","match":{"touser":"`+reported+`"},"delivery_status":"failed:system failed","times":1}`)
	addRule(t, mock, `{"endpoint":"template_send","match":{"touser":"`+busy+`"},"errcode":-1,"times":4}`)
	send := func(to, requestID string) string {
		code, body, hdr := a.do(http.MethodPost, "/v1/messages", order(to), map[string]string{
			service.HeaderRequestID: requestID, service.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
		require.Equal(t, http.StatusAccepted, code, "%s", body)
		require.Equal(t, requestID, hdr.Get(service.HeaderRequestID))
		var acc service.Accepted
		require.NoError(t, json.Unmarshal(body, &acc))
		return acc.ID
	}
	happy := send(openid(500), "checkout-500")
	r1 := send(reported, "checkout-501")
	// Ids order by their millisecond; two from the same one have no
	// defined order, and the "newest first" check below needs one.
	time.Sleep(5 * time.Millisecond)
	b1 := send(busy, "checkout-502")
	a.waitStatus(happy, service.StatusDelivered, 20*time.Second)
	require.Equal(t, service.ReasonSystemFailed, a.waitStatus(r1, service.StatusFailed, 20*time.Second).Reason)
	require.Equal(t, service.ReasonAttemptsExhausted, a.waitStatus(b1, service.StatusFailed, 20*time.Second).Reason)

	// Find: by user, and among the dead letters.
	var page service.MessagePage
	get := func(path string) {
		t.Helper()
		code, body, _ := a.do(http.MethodGet, path, nil, nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
		page = service.MessagePage{}
		require.NoError(t, json.Unmarshal(body, &page))
	}
	get("/v1/messages?touser=" + reported)
	require.Len(t, page.Messages, 1)
	assert.Equal(t, r1, page.Messages[0].ID)
	assert.Equal(t, "checkout-501", page.Messages[0].RequestID)
	get("/v1/deadletters?app=default")
	var dead []string
	for _, m := range page.Messages {
		dead = append(dead, m.ID)
	}
	assert.Equal(t, []string{b1, r1}, dead, "newest first")
	get("/v1/messages?status=failed&reason=attempts_exhausted&since=" + url.QueryEscape(time.Now().Add(-time.Minute).Format(time.RFC3339)))
	require.Len(t, page.Messages, 1)
	assert.Equal(t, b1, page.Messages[0].ID)
	require.NotNil(t, page.Messages[0].LastError)
	assert.Equal(t, -1, page.Messages[0].LastError.ErrCode)

	// See: the timeline of the busy one.
	m := a.get(b1)
	var kinds []string
	for _, h := range m.History {
		kinds = append(kinds, h.Type+":"+h.Outcome)
	}
	assert.Equal(t, []string{"accepted:", "attempt:retry", "attempt:retry", "attempt:retry", "attempt:failed"}, kinds)
	assert.Equal(t, "checkout-502", m.History[0].RequestID)
	assert.NotEmpty(t, m.History[1].Instance)
	assert.NotNil(t, m.History[1].LatencyMS)

	// Fix: redrive both, the reported one without force (WeChat failed
	// it; nothing reached the user).
	for _, id := range []string{r1, b1} {
		code, body, _ := a.do(http.MethodPost, "/v1/messages/"+id+"/redrive", nil, map[string]string{service.HeaderRequestID: "ops-" + id})
		require.Equal(t, http.StatusOK, code, "%s", body)
	}
	mr := a.waitStatus(r1, service.StatusDelivered, 20*time.Second)
	mb := a.waitStatus(b1, service.StatusDelivered, 20*time.Second)
	assert.Equal(t, 1, mr.Redrives)
	assert.Equal(t, 1, mb.Attempts, "attempts start again")
	last := mr.History[len(mr.History)-1]
	assert.Equal(t, service.HistoryDeliveryReport, last.Type)
	assert.Equal(t, wechat.StatusSuccess, last.Status)

	// Once each to the user: the reported one went out twice at the mock
	// (WeChat failed the first), under two client_msg_ids; the busy one
	// once.
	delivered, _ := deliveries(t, mock)
	assert.Equal(t, 1, delivered[r1], "the first send, which WeChat then failed")
	assert.Equal(t, 1, delivered[r1+"-1"], "the redrive's send, under its own client_msg_id")
	assert.Equal(t, 1, delivered[b1])

	// Trace: every log line about the message carries the request id that
	// created it (the redrive's own line carries the operator's request).
	for id, rid := range map[string]string{r1: "checkout-501", b1: "checkout-502"} {
		var msgs []string
		for _, line := range strings.Split(in.logs.String(), "\n") {
			if !strings.Contains(line, `"id":"`+id+`"`) {
				continue
			}
			var l struct {
				Msg       string `json:"msg"`
				RequestID string `json:"request_id"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &l), line)
			msgs = append(msgs, l.Msg)
			if l.Msg == "message redriven by an operator" {
				assert.Equal(t, "ops-"+id, l.RequestID)
				continue
			}
			assert.Equal(t, rid, l.RequestID, "log line %q about %s", l.Msg, id)
		}
		assert.Contains(t, msgs, "message accepted")
		assert.Contains(t, msgs, "message sent")
		assert.Contains(t, msgs, "message redriven by an operator")
		if id == r1 {
			assert.Contains(t, msgs, "message failed: its delivery report says so")
			assert.Contains(t, msgs, "message delivered")
		} else {
			assert.Contains(t, msgs, "attempt did not send the message; it is retried")
			assert.Contains(t, msgs, "message failed")
		}
	}
}
