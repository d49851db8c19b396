package callback_test

import (
	"encoding/json"
	"encoding/xml"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/store"
)

const (
	pushUser        = "oUser-push-000000000000001"
	eventHookSecret = "event-hook-secret-value-0123"
)

// testReplies are the reply rules of every app in the inbound tests.
var testReplies = apps.Replies{
	{On: "subscribe", Text: "Welcome ]]> <b>&amp; {{.Secret}}"},
	{On: "CLICK", EventKey: "MENU_HELP", Text: "menu help"},
	{Keyword: "help", Text: "exact help"},
	{Keyword: "order ", Match: apps.MatchPrefix, Text: "order status"},
}

// withEvents gives every app the reply rules and an event webhook.
func withEvents(o *callback.Options) {
	for _, a := range o.Apps {
		a.Replies = testReplies
		a.EventWebhook = apps.Webhook{URL: "http://127.0.0.1:1/hook", Secret: eventHookSecret}
	}
}

// sealRaw builds WeChat's request for a push given as raw XML (fields
// wechat.Message does not model), as SealCallback does.
func (e *env) sealRaw(plain string, mode wechat.Mode) (url.Values, []byte) {
	e.t.Helper()
	e.nonce++
	ts, nonce := strconv.FormatInt(fixedNow.Unix(), 10), strconv.Itoa(5000+e.nonce)
	q := url.Values{}
	q.Set(wechat.ParamSignature, e.sender.Sign(ts, nonce))
	q.Set(wechat.ParamTimestamp, ts)
	q.Set(wechat.ParamNonce, nonce)
	q.Set(wechat.ParamOpenID, pushUser)
	if mode == wechat.ModePlain {
		return q, []byte(plain)
	}
	enc, err := e.sender.Encrypt([]byte(plain))
	require.NoError(e.t, err)
	body := "<xml><ToUserName><![CDATA[" + originalID + "]]></ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
	if mode == wechat.ModeCompat {
		body = strings.Replace(plain, "</xml>", "<Encrypt><![CDATA["+enc+"]]></Encrypt></xml>", 1)
	}
	q.Set(wechat.ParamEncryptType, wechat.EncryptTypeAES)
	q.Set(wechat.ParamMsgSignature, e.sender.Sign(ts, nonce, enc))
	return q, []byte(body)
}

// createTime is the CreateTime of the pushes the tests build: each a
// second before the last, so that no two share a dedup key.
var createTime = fixedNow.Unix()

// envelope is the common part of a push of pushUser.
func envelope(msgType, rest string) string {
	createTime--
	return "<xml><ToUserName><![CDATA[" + originalID + "]]></ToUserName><FromUserName><![CDATA[" + pushUser +
		"]]></FromUserName><CreateTime>" + strconv.FormatInt(createTime, 10) + "</CreateTime><MsgType><![CDATA[" +
		msgType + "]]></MsgType>" + rest + "</xml>"
}

func event(name, rest string) string {
	return envelope("event", "<Event><![CDATA["+name+"]]></Event>"+rest)
}

// queued returns the pushes waiting for the event webhook of app, in order.
func (e *env) queued(app string) []service.InboundEvent {
	e.t.Helper()
	ctx := e.t.Context()
	var out []service.InboundEvent
	toks, err := e.store.ReclaimInbound(ctx, "inspect", 0, 100)
	require.NoError(e.t, err)
	fresh, err := e.store.ReadInbound(ctx, "inspect", 100, -1)
	require.NoError(e.t, err)
	for _, tok := range append(toks, fresh...) {
		for {
			p, _, err := e.store.NextInbound(ctx, tok.Queue)
			require.NoError(e.t, err)
			if p == nil {
				break
			}
			require.Equal(e.t, app, p.App)
			var ev service.InboundEvent
			require.NoError(e.t, json.Unmarshal(p.Payload, &ev), "payload %s", p.Payload)
			require.Equal(e.t, p.ID, ev.ID)
			out = append(out, ev)
			_, err = e.store.FinishInbound(ctx, tok, p.ID)
			require.NoError(e.t, err)
		}
	}
	return out
}

// openReply checks a passive reply's envelope for the push's mode and
// returns the reply message inside.
func (e *env) openReply(body []byte, encrypted bool, nonce string) map[string]string {
	e.t.Helper()
	plain := body
	if encrypted {
		var sealed wechat.EncryptedReply
		require.NoError(e.t, xml.Unmarshal(body, &sealed), "reply %s", body)
		require.Equal(e.t, nonce, sealed.Nonce, "the reply echoes the request's nonce")
		require.Equal(e.t, wechat.Signature(cbToken, strconv.FormatInt(sealed.TimeStamp, 10), sealed.Nonce, sealed.Encrypt), sealed.MsgSignature,
			"msg_signature over token, TimeStamp, Nonce, Encrypt")
		var err error
		plain, err = e.sender.OpenReply(&sealed)
		require.NoError(e.t, err)
	} else {
		require.NotContains(e.t, string(body), "<Encrypt>")
	}
	var m struct {
		ToUserName, FromUserName, MsgType, Content string
		CreateTime                                 int64
	}
	require.NoError(e.t, xml.Unmarshal(plain, &m), "reply %s", plain)
	require.Equal(e.t, fixedNow.Unix(), m.CreateTime)
	return map[string]string{"to": m.ToUserName, "from": m.FromUserName, "type": m.MsgType, "content": m.Content}
}

// TestPushTypes: every kind of push, in each mode, is answered (its reply
// or "success"), recorded once and queued for the event webhook with all
// its fields, unknown ones included.
func TestPushTypes(t *testing.T) {
	pushes := []struct {
		name  string
		xml   string
		typ   string
		reply string // the reply's text; empty: "success"
		field string // one field the payload must carry, as "Name=value"
	}{
		{"subscribe", event("subscribe", "<EventKey><![CDATA[]]></EventKey>"), "subscribe", testReplies[0].Text, "EventKey="},
		{"subscribe by qr", event("subscribe", "<EventKey><![CDATA[qrscene_1001]]></EventKey><Ticket><![CDATA[gQH47]]></Ticket>"), "subscribe", testReplies[0].Text, "Ticket=gQH47"},
		{"unsubscribe", event("unsubscribe", "<EventKey><![CDATA[]]></EventKey>"), "unsubscribe", "", "Event=unsubscribe"},
		{"scan", event("SCAN", "<EventKey><![CDATA[1001]]></EventKey><Ticket><![CDATA[gQH47]]></Ticket>"), "SCAN", "", "EventKey=1001"},
		{"location event", event("LOCATION", "<Latitude>31.230416</Latitude><Longitude>121.473701</Longitude><Precision>65.000000</Precision>"), "LOCATION", "", "Latitude=31.230416"},
		{"click", event("CLICK", "<EventKey><![CDATA[MENU_HELP]]></EventKey>"), "CLICK", "menu help", "EventKey=MENU_HELP"},
		{"click other", event("CLICK", "<EventKey><![CDATA[OTHER]]></EventKey>"), "CLICK", "", "EventKey=OTHER"},
		{"view", event("VIEW", "<EventKey><![CDATA[https://example.com/shop]]></EventKey><MenuId>410418124</MenuId>"), "VIEW", "", "MenuId=410418124"},
		{"text help", envelope("text", "<Content><![CDATA[help]]></Content><MsgId>7250021412600020992</MsgId>"), "text", "exact help", "MsgId=7250021412600020992"},
		{"text prefix", envelope("text", "<Content><![CDATA[order 42]]></Content><MsgId>7250021412600020993</MsgId>"), "text", "order status", "Content=order 42"},
		{"text other", envelope("text", "<Content><![CDATA[help me]]></Content><MsgId>7250021412600020994</MsgId>"), "text", "", "Content=help me"},
		{"image", envelope("image", "<PicUrl><![CDATA[http://mmbiz.qpic.cn/x/0]]></PicUrl><MediaId><![CDATA[M1]]></MediaId><MsgId>24560913245687002</MsgId>"), "image", "", "MediaId=M1"},
		{"location", envelope("location", "<Location_X>31.230416</Location_X><Location_Y>121.473701</Location_Y><Scale>15</Scale><Label><![CDATA[Square]]></Label><MsgId>24560913245687005</MsgId>"), "location", "", "Label=Square"},
		{"unknown event", event("brand_new_event", "<Thing><![CDATA[x]]></Thing>"), "brand_new_event", "", "Thing=x"},
	}
	modes := []struct {
		app  string
		mode wechat.Mode
	}{{plainApp, wechat.ModePlain}, {appName, wechat.ModePlain}, {compatApp, wechat.ModeCompat}, {safeApp, wechat.ModeSafe}, {appName, wechat.ModeSafe}}
	for _, m := range modes {
		t.Run(m.app+"/"+string(m.mode), func(t *testing.T) {
			e := newEnv(t, withEvents)
			for _, p := range pushes {
				q, body := e.sealRaw(p.xml, m.mode)
				for try := range 2 { // WeChat's retry gets the same answer
					if try == 1 {
						q, body = e.sealRaw(p.xml, m.mode) // a retry is signed afresh
					}
					res := e.post(m.app, q, body)
					require.Equal(t, 200, res.Code, "%s: %s", p.name, res.Body)
					if p.reply == "" {
						require.Equal(t, "success", res.Body.String(), p.name)
						continue
					}
					got := e.openReply(res.Body.Bytes(), m.mode != wechat.ModePlain, q.Get(wechat.ParamNonce))
					require.Equal(t, map[string]string{"to": pushUser, "from": originalID, "type": "text", "content": p.reply}, got, "%s try %d", p.name, try)
				}
			}
			evs := e.queued(m.app)
			require.Len(t, evs, len(pushes), "each push queued once")
			for i, p := range pushes {
				ev := evs[i]
				require.Equal(t, p.typ, ev.Type, p.name)
				require.Equal(t, service.EventInbound, ev.Event)
				require.Equal(t, pushUser, ev.OpenID)
				require.Equal(t, originalID, ev.ToUserName)
				require.Less(t, ev.CreateTime, fixedNow.Unix())
				require.Equal(t, fixedNow, ev.ReceivedAt)
				name, value, _ := strings.Cut(p.field, "=")
				require.Equal(t, value, ev.Fields[name], "%s: fields %v", p.name, ev.Fields)
				require.NotContains(t, ev.Fields, "Encrypt", "only the decrypted push counts")
			}
			require.Equal(t, "7250021412600020992", evs[8].MsgID, "a MsgId past 2^53, as a string")
			require.Equal(t, float64(1), counterValue(t, e.metrics.EventsReceived.WithLabelValues(m.app, "other", callback.EventRecorded)))
			require.Equal(t, float64(1), counterValue(t, e.metrics.EventsReceived.WithLabelValues(m.app, "other", callback.EventDuplicate)))
			require.Equal(t, float64(2), counterValue(t, e.metrics.EventsReceived.WithLabelValues(m.app, "subscribe", callback.EventRecorded)))
		})
	}
}

// TestPushFollowerState: subscribe and unsubscribe pushes set the
// follower state, also for an app without an event webhook.
func TestPushFollowerState(t *testing.T) {
	e := newEnv(t)
	q, body := e.sealRaw(event("unsubscribe", ""), wechat.ModeSafe)
	require.Equal(t, "success", e.post(safeApp, q, body).Body.String())
	f, err := e.store.ReadFollower(t.Context(), safeApp, pushUser)
	require.NoError(t, err)
	require.True(t, f.Known)
	require.False(t, f.Following)
	require.Equal(t, store.SourceEvent, f.Source)
	require.Equal(t, "unsubscribe", f.LastEvent)
	require.Empty(t, e.queued(safeApp), "no event webhook: nothing queued")
}

// TestPushNestedFields: nested and repeated elements keep their shape.
func TestPushNestedFields(t *testing.T) {
	e := newEnv(t, withEvents)
	q, body := e.sealRaw(event("pic_weixin", "<EventKey><![CDATA[K]]></EventKey><SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum><![CDATA[a]]></PicMd5Sum></item><item><PicMd5Sum><![CDATA[b]]></PicMd5Sum></item></PicList></SendPicsInfo>"), wechat.ModePlain)
	require.Equal(t, 200, e.post(plainApp, q, body).Code)
	evs := e.queued(plainApp)
	require.Len(t, evs, 1)
	require.Equal(t, map[string]any{"Count": "2", "PicList": map[string]any{"item": []any{
		map[string]any{"PicMd5Sum": "a"}, map[string]any{"PicMd5Sum": "b"}}}}, evs[0].Fields["SendPicsInfo"])
}

// TestPushSecretsNotLogged: the callback token, the keys and the event
// webhook's secret never reach the logs.
func TestPushSecretsNotLogged(t *testing.T) {
	e := newEnv(t, withEvents)
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeSafe} {
		q, body := e.sealRaw(event("subscribe", ""), mode)
		require.Equal(t, 200, e.post(appName, q, body).Code)
		q, body = e.sealRaw(envelope("text", "<Content><![CDATA[help]]></Content><MsgId>1</MsgId>"), mode)
		require.Equal(t, 200, e.post(appName, q, body).Code)
	}
	logs := e.logs.String()
	require.NotEmpty(t, logs)
	for _, secret := range []string{cbToken, aesKey, previousKey, eventHookSecret} {
		require.NotContains(t, logs, secret)
	}
}
