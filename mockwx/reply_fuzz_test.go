package mockwx

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wxpush/wxpush/internal/wechat"
)

// FuzzJudgeReply: whatever an app answers a push with, plain or sealed in
// safe mode, the judge never panics and always names an outcome: acked,
// replied with a decoded reply, or reply_invalid with a reason.
func FuzzJudgeReply(f *testing.F) {
	const openid, gh = "oUser-fuzz-000001", DemoOriginalID
	f.Add([]byte("success"), false)
	f.Add([]byte(""), true)
	f.Add([]byte(`<xml><ToUserName><![CDATA[oUser-fuzz-000001]]></ToUserName><FromUserName><![CDATA[gh_6d6f636b7778]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi ]]]]><![CDATA[>]]></Content></xml>`), false)
	f.Add([]byte(`<xml><ToUserName>oUser-fuzz-000001</ToUserName><FromUserName>gh_6d6f636b7778</FromUserName><CreateTime>1</CreateTime><MsgType>news</MsgType><ArticleCount>1</ArticleCount><Articles><item><Title>t</Title></item></Articles></xml>`), true)
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xml><Content>&b;</Content></xml>`), false)
	f.Add([]byte(`<xml><Encrypt>AAAA</Encrypt><MsgSignature>x</MsgSignature><TimeStamp>1</TimeStamp><Nonce>1</Nonce></xml>`), false)
	cr, err := wechat.NewCrypter(wechat.CrypterConfig{Token: DemoCallbackToken, AppID: DemoAppID, EncodingAESKey: DemoEncodingAESKey})
	if err != nil {
		f.Fatal(err)
	}
	j := replyJudge{crypter: cr, mode: wechat.ModeSafe, openID: openid, originalID: gh}
	f.Fuzz(func(t *testing.T, body []byte, seal bool) {
		if seal {
			r, err := cr.SealReply(body, 1714112445, "415670741")
			if err != nil {
				t.Skip()
			}
			var buf bytes.Buffer
			if err := xml.NewEncoder(&buf).Encode(r); err != nil {
				t.Fatal(err)
			}
			body = buf.Bytes()
		}
		outcome, reply, reason := j.judge(body)
		switch outcome {
		case OutcomeAcked:
		case OutcomeReplied:
			if reply == nil {
				t.Fatalf("replied without a reply for %q", body)
			}
		case OutcomeReplyInvalid:
			if reason == "" {
				t.Fatalf("reply_invalid without a reason for %q", body)
			}
		default:
			t.Fatalf("outcome %q for %q", outcome, body)
		}
	})
}

// FuzzPushEvent: whatever POST /_mock/events is given, it answers 201,
// 400 or 409 with JSON, never anything else.
func FuzzPushEvent(f *testing.F) {
	f.Add([]byte(`{"openid":"oUser-fuzz-000001","type":"text","content":"hi"}`))
	f.Add([]byte(`{"events":[{"openid":"oUser-fuzz-000001","type":"subscribe","event_key":"qrscene_1"},{"openid":"oUser-fuzz-000001","type":"CLICK","event_key":"K"}]}`))
	f.Add([]byte(`{"openid":"oUser-fuzz-000001","type":"LOCATION","latitude":1e400}`))
	f.Add([]byte(`{"openid":"oUser-fuzz-000001","type":"VIEW","event_key":"https://x","menu_id":-1}`))
	f.Add([]byte(`{"events":[]}`))
	f.Add([]byte(`[]`))
	m, err := New(Config{Settings: Settings{LedgerCapacity: 1 << 12}}, Options{Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/_mock/events", bytes.NewReader(body)))
		switch rec.Code {
		case http.StatusCreated, http.StatusBadRequest, http.StatusConflict:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.String())
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer %q is not JSON", rec.Body.String())
		}
	})
}
