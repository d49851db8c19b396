package mockwx_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// appReceiver plays an app's callback endpoint: it verifies each push with
// internal/wechat's crypter, keeps its query, raw body and decrypted XML,
// and answers with answer (default "success").
type appReceiver struct {
	t       *testing.T
	crypter *wechat.Crypter
	mu      sync.Mutex
	pushes  []receivedPush
	answer  func(p receivedPush) (int, []byte, time.Duration)
}

type receivedPush struct {
	query url.Values
	body  []byte
	plain []byte            // the plaintext XML (decrypted in compat and safe)
	field map[string]string // its top-level elements
}

func (rv *appReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	if _, err := rv.crypter.OpenCallback(q, body); err != nil {
		rv.t.Errorf("push did not verify: %v (query %s, body %s)", err, r.URL.RawQuery, body)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	p := receivedPush{query: q, body: body, plain: body}
	if q.Get(wechat.ParamEncryptType) == wechat.EncryptTypeAES {
		outer, err := wechat.ParseMessage(body)
		require.NoError(rv.t, err)
		p.plain, err = rv.crypter.Decrypt(outer.Encrypt)
		require.NoError(rv.t, err)
	}
	p.field = xmlFields(rv.t, p.plain)
	rv.mu.Lock()
	rv.pushes = append(rv.pushes, p)
	answer := rv.answer
	rv.mu.Unlock()
	status, reply, delay := 200, []byte("success"), time.Duration(0)
	if answer != nil {
		status, reply, delay = answer(p)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(reply)
}

func (rv *appReceiver) received() []receivedPush {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]receivedPush(nil), rv.pushes...)
}

func (rv *appReceiver) setAnswer(f func(p receivedPush) (int, []byte, time.Duration)) {
	rv.mu.Lock()
	rv.answer = f
	rv.mu.Unlock()
}

// xmlFields reads the top-level elements of <xml> (text of leaf elements).
func xmlFields(t *testing.T, b []byte) map[string]string {
	var v struct {
		Items []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	}
	require.NoError(t, xml.Unmarshal(b, &v), "%s", b)
	m := map[string]string{}
	for _, it := range v.Items {
		m[it.XMLName.Local] = it.Text
	}
	return m
}

// eventsEnv starts a mock whose demo app pushes to an appReceiver in mode.
func eventsEnv(t *testing.T, mode wechat.Mode, settings mockwx.Settings) (*env, *appReceiver) {
	t.Helper()
	app := mockwx.DemoApp()
	crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: app.CallbackToken, AppID: app.AppID, EncodingAESKey: app.EncodingAESKey})
	require.NoError(t, err)
	rv := &appReceiver{t: t, crypter: crypter}
	hs := httptest.NewServer(rv)
	t.Cleanup(hs.Close)
	app.CallbackURL = hs.URL + "/wechat/callback/default"
	app.CallbackMode = mode
	clk := newClock()
	s := mockwxtest.NewServer(t, mockwxtest.Options{Config: mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{app}, Settings: settings}, Seed: 3, Now: clk.Now})
	return &env{Server: s, clock: clk, wc: s.WeChat()}, rv
}

// waitEvents waits for every push to settle and returns the event log.
func (e *env) waitEvents(t *testing.T) []mockwx.EventRecord {
	t.Helper()
	require.NoError(t, e.Mock.WaitEvents(ctxTimeout(t, 20*time.Second)))
	p, err := e.Admin.Events(t.Context(), 0, 0)
	require.NoError(t, err)
	return p.Events
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

func TestEventPushXMLInEveryMode(t *testing.T) {
	const user = "oEventUser-000000000000000001"
	tests := []struct {
		name string
		req  mockwx.EventRequest
		want map[string]string // fields with exact values; "*" means present and non-empty
		bare []string          // elements written as bare numbers
	}{
		{"subscribe", mockwx.EventRequest{Type: "subscribe"},
			map[string]string{"MsgType": "event", "Event": "subscribe", "EventKey": ""}, nil},
		{"subscribe by QR", mockwx.EventRequest{Type: "subscribe", EventKey: "qrscene_1001"},
			map[string]string{"MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_1001", "Ticket": "*"}, nil},
		{"SCAN", mockwx.EventRequest{Type: "SCAN", EventKey: "1001", Ticket: "gQH47joAAAAAAAAAASxodHRw"},
			map[string]string{"MsgType": "event", "Event": "SCAN", "EventKey": "1001", "Ticket": "gQH47joAAAAAAAAAASxodHRw"}, nil},
		{"CLICK", mockwx.EventRequest{Type: "CLICK", EventKey: "MENU_HELP"},
			map[string]string{"MsgType": "event", "Event": "CLICK", "EventKey": "MENU_HELP"}, nil},
		{"VIEW", mockwx.EventRequest{Type: "VIEW", EventKey: "https://example.com/shop", MenuID: i64(410418124)},
			map[string]string{"MsgType": "event", "Event": "VIEW", "EventKey": "https://example.com/shop", "MenuId": "410418124"}, []string{"MenuId"}},
		{"LOCATION", mockwx.EventRequest{Type: "LOCATION", Latitude: f64(31.230416), Longitude: f64(121.473701)},
			map[string]string{"MsgType": "event", "Event": "LOCATION", "Latitude": "31.230416", "Longitude": "121.473701", "Precision": "65.000000"},
			[]string{"Latitude", "Longitude", "Precision"}},
		{"text", mockwx.EventRequest{Type: "text", Content: "hello ]]> world"},
			map[string]string{"MsgType": "text", "Content": "hello ]]> world", "MsgId": "*"}, []string{"MsgId"}},
		{"image", mockwx.EventRequest{Type: "image"},
			map[string]string{"MsgType": "image", "PicUrl": "*", "MediaId": "*", "MsgId": "*"}, []string{"MsgId"}},
		{"unsubscribe", mockwx.EventRequest{Type: "unsubscribe"},
			map[string]string{"MsgType": "event", "Event": "unsubscribe", "EventKey": ""}, nil},
	}
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			e, rv := eventsEnv(t, mode, mockwx.Settings{})
			for _, tt := range tests {
				req := tt.req
				req.OpenID = user
				_, err := e.Admin.PushEvent(t.Context(), req)
				require.NoError(t, err, tt.name)
				// one at a time, so pushes arrive in order
				require.NoError(t, e.Mock.WaitEvents(ctxTimeout(t, 10*time.Second)))
			}
			got := rv.received()
			require.Len(t, got, len(tests))
			for i, tt := range tests {
				p := got[i]
				assert.Equal(t, user, p.query.Get(wechat.ParamOpenID), tt.name)
				if mode == wechat.ModePlain {
					assert.False(t, p.query.Has(wechat.ParamEncryptType), tt.name)
				} else {
					assert.Equal(t, wechat.EncryptTypeAES, p.query.Get(wechat.ParamEncryptType), tt.name)
					assert.Regexp(t, `^[0-9a-f]{40}$`, p.query.Get(wechat.ParamMsgSignature), tt.name)
					outer := xmlFields(t, p.body)
					assert.Equal(t, mockwx.DemoOriginalID, outer["ToUserName"], tt.name)
					if mode == wechat.ModeSafe {
						assert.Len(t, outer, 2, "%s: safe mode body is ToUserName and Encrypt only: %s", tt.name, p.body)
					} else {
						assert.Equal(t, tt.want["MsgType"], outer["MsgType"], "%s: compat mode keeps the plaintext fields", tt.name)
					}
				}
				f := p.field
				assert.Equal(t, mockwx.DemoOriginalID, f["ToUserName"], tt.name)
				assert.Equal(t, user, f["FromUserName"], tt.name)
				assert.Equal(t, strconv.FormatInt(e.clock.Now().Unix(), 10), f["CreateTime"], tt.name)
				for k, v := range tt.want {
					got, ok := f[k]
					assert.True(t, ok, "%s: element %s missing in %s", tt.name, k, p.plain)
					if v == "*" {
						assert.NotEmpty(t, got, "%s: %s", tt.name, k)
					} else {
						assert.Equal(t, v, got, "%s: %s", tt.name, k)
					}
				}
				for _, k := range tt.bare {
					assert.Contains(t, string(p.plain), "<"+k+">"+f[k]+"</"+k+">", "%s: %s is a bare number", tt.name, k)
				}
				if id, ok := f["MsgId"]; ok {
					n, err := strconv.ParseInt(id, 10, 64)
					require.NoError(t, err, "%s: MsgId is an int64", tt.name)
					assert.Greater(t, n, int64(1)<<53, "%s: MsgId exceeds 2^53", tt.name)
				} else {
					assert.NotContains(t, f, "MsgID", "%s: events carry no MsgId", tt.name)
				}
			}
			for _, r := range e.waitEvents(t) {
				assert.Equal(t, mockwx.OutcomeAcked, r.Outcome, "%s %s", r.ID, r.Type)
				assert.Equal(t, 1, r.Attempts)
			}
		})
	}
}

// TestEventDeliverySemantics: WeChat retries only when no answer comes in
// time, with the same query and body; an answer settles the push.
func TestEventDeliverySemantics(t *testing.T) {
	app := mockwx.DemoApp()
	crypter, err := wechat.NewCrypter(wechat.CrypterConfig{Token: app.CallbackToken, AppID: app.AppID, EncodingAESKey: app.EncodingAESKey})
	require.NoError(t, err)
	envelope := func(content string) []byte {
		r, err := crypter.SealReply([]byte(content), 1700000000, "123")
		require.NoError(t, err)
		b, err := xml.Marshal(r)
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name     string
		mode     wechat.Mode
		answer   func(receivedPush) (int, []byte, time.Duration)
		outcome  string
		attempts int
	}{
		{"slow receiver", wechat.ModeSafe, func(receivedPush) (int, []byte, time.Duration) { return 200, []byte("success"), 2 * time.Second },
			mockwx.OutcomeFailed, 3},
		{"200 garbage", wechat.ModePlain, func(receivedPush) (int, []byte, time.Duration) { return 200, []byte(`{"ok":true}`), 0 },
			mockwx.OutcomeReplyInvalid, 1},
		{"encrypted empty envelope", wechat.ModeSafe, func(receivedPush) (int, []byte, time.Duration) { return 200, envelope(""), 0 },
			mockwx.OutcomeAcked, 1},
		{"empty body in safe mode", wechat.ModeSafe, func(receivedPush) (int, []byte, time.Duration) { return 200, nil, 0 },
			mockwx.OutcomeAcked, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, rv := eventsEnv(t, tt.mode, mockwx.Settings{CallbackTimeoutMS: 150})
			rv.setAnswer(tt.answer)
			id, err := e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: "oEventUser-retry-00001", Type: "text", Content: "hi"})
			require.NoError(t, err)
			evs := e.waitEvents(t)
			require.Len(t, evs, 1)
			assert.Equal(t, id, evs[0].ID)
			assert.Equal(t, tt.outcome, evs[0].Outcome, "reason %q", evs[0].Reason)
			assert.Equal(t, tt.attempts, evs[0].Attempts)
			got := rv.received()
			require.Len(t, got, tt.attempts, "HTTP requests made")
			for _, p := range got[1:] {
				assert.Equal(t, got[0].query, p.query, "a retry repeats the query")
				assert.Equal(t, got[0].body, p.body, "a retry repeats the body")
			}
			if tt.outcome != mockwx.OutcomeAcked {
				assert.NotEmpty(t, evs[0].Reason)
			}
		})
	}
}

func TestEventReplies(t *testing.T) {
	const user = "oEventUser-replies-000001"
	reply := func(msgType, body string) string {
		return `<xml><ToUserName><![CDATA[` + user + `]]></ToUserName><FromUserName><![CDATA[` + mockwx.DemoOriginalID +
			`]]></FromUserName><CreateTime>1718000001</CreateTime><MsgType><![CDATA[` + msgType + `]]></MsgType>` + body + `</xml>`
	}
	tests := []struct {
		name    string
		reply   string
		outcome string
		want    *mockwx.Reply // without Encrypted/CreateTime
		reason  string
	}{
		{"text", reply("text", `<Content><![CDATA[Thanks for following]]></Content>`), mockwx.OutcomeReplied,
			&mockwx.Reply{MsgType: "text", Content: "Thanks for following"}, ""},
		{"text without CDATA, MsgType first", `<xml><MsgType>text</MsgType><Content>hi</Content><ToUserName>` + user + `</ToUserName><FromUserName>` + mockwx.DemoOriginalID + `</FromUserName><CreateTime>1718000001000</CreateTime></xml>`,
			mockwx.OutcomeReplied, &mockwx.Reply{MsgType: "text", Content: "hi"}, ""},
		{"image", reply("image", `<Image><MediaId><![CDATA[MEDIA_IMG_9]]></MediaId></Image>`), mockwx.OutcomeReplied,
			&mockwx.Reply{MsgType: "image", MediaID: "MEDIA_IMG_9"}, ""},
		{"voice", reply("voice", `<Voice><MediaId><![CDATA[MEDIA_VOICE_9]]></MediaId></Voice>`), mockwx.OutcomeReplied,
			&mockwx.Reply{MsgType: "voice", MediaID: "MEDIA_VOICE_9"}, ""},
		{"video", reply("video", `<Video><MediaId><![CDATA[MEDIA_VID_9]]></MediaId><Title><![CDATA[Clip]]></Title></Video>`), mockwx.OutcomeReplied,
			&mockwx.Reply{MsgType: "video", MediaID: "MEDIA_VID_9", Title: "Clip"}, ""},
		{"music", reply("music", `<Music><Title><![CDATA[Song]]></Title><MusicUrl><![CDATA[https://example.com/s.mp3]]></MusicUrl><HQMusicUrl><![CDATA[https://example.com/s_hq.mp3]]></HQMusicUrl><ThumbMediaId><![CDATA[MEDIA_THUMB_9]]></ThumbMediaId></Music>`),
			mockwx.OutcomeReplied, &mockwx.Reply{MsgType: "music", Title: "Song", MusicURL: "https://example.com/s.mp3", HQMusicURL: "https://example.com/s_hq.mp3", ThumbMediaID: "MEDIA_THUMB_9"}, ""},
		{"news", reply("news", `<ArticleCount>1</ArticleCount><Articles><item><Title><![CDATA[Guide]]></Title><Description><![CDATA[Read me]]></Description><PicUrl><![CDATA[https://example.com/p.jpg]]></PicUrl><Url><![CDATA[https://example.com/g]]></Url></item></Articles>`),
			mockwx.OutcomeReplied, &mockwx.Reply{MsgType: "news", Articles: []mockwx.Article{{Title: "Guide", Description: "Read me", PicURL: "https://example.com/p.jpg", URL: "https://example.com/g"}}}, ""},
		{"wrong ToUserName", `<xml><ToUserName>oSomeoneElse-000001</ToUserName><FromUserName>` + mockwx.DemoOriginalID + `</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>`,
			mockwx.OutcomeReplyInvalid, nil, "ToUserName"},
		{"wrong FromUserName", `<xml><ToUserName>` + user + `</ToUserName><FromUserName>gh_000000000000</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>`,
			mockwx.OutcomeReplyInvalid, nil, "FromUserName"},
		{"empty text Content", reply("text", `<Content></Content>`), mockwx.OutcomeReplyInvalid, nil, "Content"},
		{"bad XML", `<xml><ToUserName>`, mockwx.OutcomeReplyInvalid, nil, "XML"},
		{"unknown MsgType", reply("sticker", ``), mockwx.OutcomeReplyInvalid, nil, "MsgType"},
	}
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeSafe} {
		for _, encrypt := range []bool{false, true} {
			t.Run(string(mode)+"/encrypted="+strconv.FormatBool(encrypt), func(t *testing.T) {
				e, rv := eventsEnv(t, mode, mockwx.Settings{})
				rv.setAnswer(func(p receivedPush) (int, []byte, time.Duration) {
					var r struct {
						Content string `xml:"Content"`
					}
					_ = xml.Unmarshal(p.plain, &r)
					n, _ := strconv.Atoi(r.Content)
					body := []byte(tests[n].reply)
					if encrypt {
						env, err := rv.crypter.SealReply(body, 1718000002, "998877")
						require.NoError(t, err)
						body, err = xml.Marshal(env)
						require.NoError(t, err)
					}
					return 200, body, 0
				})
				for i := range tests {
					_, err := e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: user, Type: "text", Content: strconv.Itoa(i)})
					require.NoError(t, err)
				}
				evs := e.waitEvents(t)
				require.Len(t, evs, len(tests))
				for i, tt := range tests {
					ev := evs[i]
					if mode == wechat.ModeSafe && !encrypt {
						assert.Equal(t, mockwx.OutcomeReplyInvalid, ev.Outcome, "%s: a plaintext reply in safe mode", tt.name)
						if tt.want != nil {
							assert.Contains(t, ev.Reason, "safe mode", tt.name)
						}
						continue
					}
					assert.Equal(t, tt.outcome, ev.Outcome, "%s: reason %q", tt.name, ev.Reason)
					assert.Equal(t, 1, ev.Attempts, tt.name)
					if tt.want != nil {
						require.NotNil(t, ev.Reply, tt.name)
						got := *ev.Reply
						assert.Equal(t, encrypt, got.Encrypted, tt.name)
						got.Encrypted, got.CreateTime = false, 0
						assert.Equal(t, *tt.want, got, tt.name)
					} else {
						assert.Nil(t, ev.Reply, tt.name)
						assert.Contains(t, ev.Reason, tt.reason, tt.name)
					}
				}
			})
		}
	}
}

func TestEncryptedReplyWithBadSignature(t *testing.T) {
	e, rv := eventsEnv(t, wechat.ModeSafe, mockwx.Settings{})
	rv.setAnswer(func(p receivedPush) (int, []byte, time.Duration) {
		env, err := rv.crypter.SealReply([]byte("success"), 1718000002, "1")
		require.NoError(t, err)
		env.MsgSignature = "0000000000000000000000000000000000000000"
		b, err := xml.Marshal(env)
		require.NoError(t, err)
		return 200, b, 0
	})
	_, err := e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: "oEventUser-badsig-0001", Type: "CLICK", EventKey: "K"})
	require.NoError(t, err)
	evs := e.waitEvents(t)
	require.Len(t, evs, 1)
	assert.Equal(t, mockwx.OutcomeReplyInvalid, evs[0].Outcome)
	assert.Contains(t, evs[0].Reason, "MsgSignature")
	assert.Equal(t, 1, evs[0].Attempts)
}

func TestBadEventInput(t *testing.T) {
	e, rv := eventsEnv(t, wechat.ModePlain, mockwx.Settings{})
	tests := []struct {
		name, body, field string
		status            int
	}{
		{"empty", ``, "body", 400},
		{"not JSON", `nope`, "body", 400},
		{"no openid", `{"type":"text","content":"x"}`, "openid", 400},
		{"bad openid", `{"openid":"a b","type":"text","content":"x"}`, "openid", 400},
		{"no type", `{"openid":"oEventUser-bad-000001"}`, "type", 400},
		{"lower-case scan", `{"openid":"oEventUser-bad-000001","type":"scan","event_key":"1"}`, "type", 400},
		{"unknown field", `{"openid":"oEventUser-bad-000001","type":"text","content":"x","colour":"red"}`, "colour", 400},
		{"text without content", `{"openid":"oEventUser-bad-000001","type":"text"}`, "content", 400},
		{"content on CLICK", `{"openid":"oEventUser-bad-000001","type":"CLICK","event_key":"K","content":"x"}`, "content", 400},
		{"subscribe key without qrscene_", `{"openid":"oEventUser-bad-000001","type":"subscribe","event_key":"1001"}`, "event_key", 400},
		{"SCAN with qrscene_", `{"openid":"oEventUser-bad-000001","type":"SCAN","event_key":"qrscene_1"}`, "event_key", 400},
		{"VIEW without URL", `{"openid":"oEventUser-bad-000001","type":"VIEW","event_key":"shop"}`, "event_key", 400},
		{"menu_id a string", `{"openid":"oEventUser-bad-000001","type":"VIEW","event_key":"https://x.y/","menu_id":"MENUID"}`, "menu_id", 400},
		{"latitude out of range", `{"openid":"oEventUser-bad-000001","type":"LOCATION","latitude":91,"longitude":0}`, "latitude", 400},
		{"LOCATION without longitude", `{"openid":"oEventUser-bad-000001","type":"LOCATION","latitude":1}`, "longitude", 400},
		{"unknown app", `{"appid":"wx0000000000000000","openid":"oEventUser-bad-000001","type":"CLICK","event_key":"K"}`, "appid", 400},
		{"batch with one bad item", `{"events":[{"openid":"oEventUser-bad-000001","type":"CLICK","event_key":"K"},{"openid":"oEventUser-bad-000001","type":"text"}]}`, "events[1].content", 400},
		{"empty batch", `{"events":[]}`, "events", 400},
		{"non-follower talks", `{"openid":"` + mockwx.DemoNotFollowing + `","type":"text","content":"x"}`, "openid", 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.post(t, "/_mock/events", []byte(tt.body))
			require.Equal(t, tt.status, status, "%s", b)
			var ae mockwx.AdminError
			require.NoError(t, jsonUnmarshal(b, &ae), "%s", b)
			assert.Equal(t, tt.field, ae.Error.Field, "%s", b)
			assert.NotEmpty(t, ae.Error.Message)
		})
	}
	evs := e.waitEvents(t)
	assert.Empty(t, evs, "nothing accepted")
	assert.Empty(t, rv.received(), "nothing pushed")
	// A rejected batch changed no follow state: its valid subscribe did not stick.
	status, _ := e.post(t, "/_mock/events", []byte(`{"events":[{"openid":"`+mockwx.DemoNotFollowing+`","type":"subscribe"},{"openid":"x","type":"text"}]}`))
	require.Equal(t, 400, status)
	u, err := e.Admin.User(t.Context(), "", mockwx.DemoNotFollowing)
	require.NoError(t, err)
	assert.False(t, u.Subscribed)
}

func TestEventBatch(t *testing.T) {
	e, rv := eventsEnv(t, wechat.ModeCompat, mockwx.Settings{})
	// A non-follower follows and then talks, in one batch.
	ids, err := e.Admin.PushEvents(t.Context(), []mockwx.EventRequest{
		{OpenID: mockwx.DemoNotFollowing, Type: "subscribe"},
		{OpenID: mockwx.DemoNotFollowing, Type: "text", Content: "hello"},
		{OpenID: "oEventUser-batch-000001", Type: "LOCATION", Latitude: f64(1), Longitude: f64(2), Precision: f64(3)},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"e1", "e2", "e3"}, ids)
	evs := e.waitEvents(t)
	require.Len(t, evs, 3)
	for i, ev := range evs {
		assert.Equal(t, ids[i], ev.ID)
		assert.Equal(t, uint64(i+1), ev.Seq)
		assert.Equal(t, mockwx.OutcomeAcked, ev.Outcome)
	}
	assert.NotZero(t, evs[1].MsgID, "a message has a MsgId")
	assert.Zero(t, evs[0].MsgID, "an event has none")
	assert.Len(t, rv.received(), 3)
	p, err := e.Admin.Events(t.Context(), 1, 1)
	require.NoError(t, err)
	require.Len(t, p.Events, 1)
	assert.Equal(t, "e2", p.Events[0].ID)
	assert.True(t, p.More)
	assert.Equal(t, uint64(2), p.NextAfter)
}

func TestFollowStateAtRunTime(t *testing.T) {
	e, _ := eventsEnv(t, wechat.ModePlain, mockwx.Settings{})
	const user = "oEventUser-follow-000001"
	tok := e.token(t)
	ctx := t.Context()

	u, err := e.Admin.User(ctx, "", user)
	require.NoError(t, err)
	assert.True(t, u.Subscribed, "by default every openid follows")
	assert.Equal(t, "config", u.Source)
	require.NotNil(t, u.SubscribeTime)
	assert.Nil(t, u.LastInteraction)

	_, err = e.Admin.PushEvent(ctx, mockwx.EventRequest{OpenID: user, Type: "unsubscribe"})
	require.NoError(t, err)
	_, err = e.wc.SendTemplate(ctx, tok, validOrder(user))
	assert.Equal(t, 43004, codeOf(err), "a user who unsubscribed: %v", err)
	u, err = e.Admin.User(ctx, mockwx.DemoAppID, user)
	require.NoError(t, err)
	assert.False(t, u.Subscribed)
	assert.Nil(t, u.SubscribeTime)
	assert.Equal(t, "events", u.Source)
	info := e.getRaw(t, mockwx.PathUserInfo+"?access_token="+tok.Reveal()+"&openid="+user+"&lang=zh_CN")
	assert.JSONEq(t, `{"subscribe":0,"openid":"`+user+`"}`, info)

	e.clock.Advance(time.Hour)
	_, err = e.Admin.PushEvent(ctx, mockwx.EventRequest{OpenID: user, Type: "subscribe", EventKey: "qrscene_1001"})
	require.NoError(t, err)
	_, err = e.wc.SendTemplate(ctx, tok, validOrder(user))
	require.NoError(t, err, "following again")
	u, err = e.Admin.User(ctx, "", user)
	require.NoError(t, err)
	assert.True(t, u.Subscribed)
	require.NotNil(t, u.SubscribeTime)
	assert.True(t, u.SubscribeTime.Equal(e.clock.Now()), "subscribe_time is the latest follow")
	require.NotNil(t, u.LastInteraction)
	info = e.getRaw(t, mockwx.PathUserInfo+"?access_token="+tok.Reveal()+"&openid="+user)
	assert.JSONEq(t, `{"subscribe":1,"openid":"`+user+`","language":"zh_CN","subscribe_time":`+strconv.FormatInt(e.clock.Now().Unix(), 10)+
		`,"remark":"","groupid":0,"tagid_list":[],"subscribe_scene":"ADD_SCENE_QR_CODE","qr_scene":1001,"qr_scene_str":""}`, info)

	// Errcodes: bad openid, bad token.
	assert.Equal(t, 40003, e.getJSON(t, mockwx.PathUserInfo+"?access_token="+tok.Reveal()+"&openid=a%20b").ErrCode)
	assert.Equal(t, 41001, e.getJSON(t, mockwx.PathUserInfo+"?openid="+user).ErrCode)
	// The admin view of a bad openid or app.
	_, err = e.Admin.User(ctx, "wx0000000000000000", user)
	var ae *mockwx.APIError
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, 404, ae.StatusCode)
}

// getRaw GETs path and returns the body.
func (e *env) getRaw(t *testing.T, path string) string {
	t.Helper()
	resp, err := e.HTTP.Client().Get(e.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestUserGetPaging(t *testing.T) {
	app := mockwx.DemoApp()
	app.Followers = mockwx.Followers{Only: []string{"oListed-000001", "oListed-000002", "oListed-000003"}}
	app.CallbackURL = "http://127.0.0.1:1/unused"
	e := newEnv(t, mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{app}, Settings: mockwx.Settings{UserListPageSize: 2}})
	tok := e.token(t).Reveal()
	get := func(next string) string {
		return e.getRaw(t, mockwx.PathUserGet+"?access_token="+tok+"&next_openid="+next)
	}
	assert.JSONEq(t, `{"total":3,"count":2,"data":{"openid":["oListed-000001","oListed-000002"]},"next_openid":"oListed-000002"}`, get(""))
	assert.JSONEq(t, `{"total":3,"count":1,"data":{"openid":["oListed-000003"]},"next_openid":"oListed-000003"}`, get("oListed-000002"))
	assert.JSONEq(t, `{"total":3,"count":0,"next_openid":""}`, get("oListed-000003"), "after the last page: no data, empty next_openid")
	assert.Equal(t, 40003, e.getJSON(t, mockwx.PathUserGet+"?access_token="+tok+"&next_openid=oNeverListed-0001").ErrCode)
	assert.Equal(t, 40014, e.getJSON(t, mockwx.PathUserGet+"?access_token=bad").ErrCode)
}

func TestUserGetFollowsEvents(t *testing.T) {
	e, _ := eventsEnv(t, wechat.ModePlain, mockwx.Settings{})
	tok := e.token(t).Reveal()
	get := func() string { return e.getRaw(t, mockwx.PathUserGet+"?access_token="+tok) }
	assert.JSONEq(t, `{"total":0,"count":0,"next_openid":""}`, get(), "no known followers: no data")
	_, err := e.Admin.PushEvents(t.Context(), []mockwx.EventRequest{
		{OpenID: "oFollower-000001", Type: "subscribe"}, {OpenID: "oFollower-000002", Type: "subscribe"}, {OpenID: "oFollower-000001", Type: "unsubscribe"},
	})
	require.NoError(t, err)
	assert.JSONEq(t, `{"total":1,"count":1,"data":{"openid":["oFollower-000002"]},"next_openid":"oFollower-000002"}`, get())
}

func TestCustomSendWindow(t *testing.T) {
	e, _ := eventsEnv(t, wechat.ModePlain, mockwx.Settings{})
	const user = "oEventUser-custom-000001"
	send := func(to string) int {
		tok := e.token(t) // the clock moves past token lifetimes
		status, b := e.post(t, mockwx.PathCustomSend+"?access_token="+tok.Reveal(), []byte(`{"touser":"`+to+`","msgtype":"text","text":{"content":"Hello"}}`))
		require.Equal(t, 200, status)
		var r wechat.Response
		require.NoError(t, jsonUnmarshal(b, &r), "%s", b)
		if r.ErrCode == 0 {
			assert.Equal(t, "ok", r.ErrMsg)
		}
		return r.ErrCode
	}
	assert.Equal(t, 45015, send(user), "no interaction yet")
	_, err := e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: user, Type: "VIEW", EventKey: "https://example.com/"})
	require.NoError(t, err)
	assert.Equal(t, 45015, send(user), "a VIEW click does not open the window")
	_, err = e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: user, Type: "text", Content: "hi"})
	require.NoError(t, err)
	assert.Equal(t, 0, send(user), "within 48 h of a message")
	e.clock.Advance(48*time.Hour - time.Second)
	assert.Equal(t, 0, send(user))
	e.clock.Advance(time.Second)
	assert.Equal(t, 45015, send(user), "48 h after the last interaction")
	_, err = e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: user, Type: "unsubscribe"})
	require.NoError(t, err)
	assert.Equal(t, 43004, send(user), "a non-follower")
	assert.Equal(t, 40003, send("a b"))

	status, b := e.post(t, mockwx.PathCustomSend+"?access_token="+e.token(t).Reveal(), []byte(`{"touser":"`+user+`","msgtype":"news"}`))
	require.Equal(t, 200, status)
	assert.Contains(t, string(b), `"errcode":40008`)

	page, err := e.Admin.Messages(t.Context(), 0, 0)
	require.NoError(t, err)
	require.Len(t, page.Messages, 8, "every custom send is in the ledger")
	for _, m := range page.Messages {
		assert.Equal(t, mockwx.LedgerAPICustomSend, m.API)
	}
	assert.Equal(t, 0, page.Messages[2].ErrCode)
	assert.JSONEq(t, `{"touser":"`+user+`","msgtype":"text","text":{"content":"Hello"}}`, string(page.Messages[2].Data))
}

func TestTemplateList(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	tok := e.token(t).Reveal()
	var got struct {
		TemplateList []struct {
			TemplateID      string `json:"template_id"`
			Title           string `json:"title"`
			Content         string `json:"content"`
			Example         string `json:"example"`
			PrimaryIndustry string `json:"primary_industry"`
		} `json:"template_list"`
	}
	body := e.getRaw(t, mockwx.PathTemplateList+"?access_token="+tok)
	require.NoError(t, jsonUnmarshal([]byte(body), &got), body)
	require.Len(t, got.TemplateList, len(mockwx.DemoApp().Templates))
	first := got.TemplateList[0]
	assert.Equal(t, "order_shipped", first.TemplateID)
	assert.Equal(t, "订单发货通知", first.Title)
	assert.Equal(t, "thing1：{{thing1.DATA}}\ncharacter_string2：{{character_string2.DATA}}\ntime3：{{time3.DATA}}\nphrase4：{{phrase4.DATA}}", first.Content)
	assert.NotContains(t, body, `"errcode"`)
	assert.Equal(t, 41001, e.getJSON(t, mockwx.PathTemplateList).ErrCode)
}

func TestFaultRulesOnNewEndpoints(t *testing.T) {
	e, rv := eventsEnv(t, wechat.ModePlain, mockwx.Settings{CallbackTimeoutMS: 2000})
	tok := e.token(t).Reveal()
	addRule(t, e, `{"endpoint":"user_info","match":{"touser":"oFaulty-000001"},"errcode":-1}`)
	addRule(t, e, `{"endpoint":"custom_send","errcode":45047}`)
	addRule(t, e, `{"endpoint":"*","match":{"appid":"`+mockwx.DemoAppID+`"},"errcode":48001,"times":1,"skip":1}`) // lets the second user_info pass
	addRule(t, e, `{"endpoint":"event","match":{"touser":"oFaulty-000002"},"fault":"timeout","times":1}`)

	assert.Equal(t, -1, e.getJSON(t, mockwx.PathUserInfo+"?access_token="+tok+"&openid=oFaulty-000001").ErrCode)
	assert.Equal(t, 0, e.getJSON(t, mockwx.PathUserInfo+"?access_token="+tok+"&openid=oFaulty-000009").ErrCode)
	status, b := e.post(t, mockwx.PathCustomSend+"?access_token="+tok, []byte(`{"touser":"oFaulty-000001","msgtype":"text","text":{"content":"x"}}`))
	require.Equal(t, 200, status)
	assert.Contains(t, string(b), `"errcode":45047`)
	assert.Equal(t, 48001, e.getJSON(t, mockwx.PathUserGet+"?access_token="+tok).ErrCode, `"*" covers user_get`)
	assert.Equal(t, 0, e.getJSON(t, mockwx.PathTemplateList+"?access_token="+tok).ErrCode)

	// The app's first answer to this user's push is lost: WeChat retries.
	_, err := e.Admin.PushEvent(t.Context(), mockwx.EventRequest{OpenID: "oFaulty-000002", Type: "CLICK", EventKey: "K"})
	require.NoError(t, err)
	evs := e.waitEvents(t)
	require.Len(t, evs, 1)
	assert.Equal(t, mockwx.OutcomeAcked, evs[0].Outcome)
	assert.Equal(t, 2, evs[0].Attempts)
	got := rv.received()
	require.Len(t, got, 2)
	assert.Equal(t, got[0].body, got[1].body)

	// errcode makes no sense on a push to the app.
	status, b = e.post(t, "/_mock/faults", []byte(`{"endpoint":"event","errcode":-1}`))
	assert.Equal(t, 400, status, "%s", b)
	status, b = e.post(t, "/_mock/faults", []byte(`{"endpoint":"user_get","match":{"touser":"oX-000001"},"errcode":-1}`))
	assert.Equal(t, 400, status, "%s", b)
}

func jsonUnmarshal(b []byte, v any) error {
	return json.NewDecoder(bytes.NewReader(b)).Decode(v)
}
