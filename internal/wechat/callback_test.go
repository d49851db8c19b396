package wechat

import (
	"bytes"
	"encoding/xml"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const jobFinishXML = `<xml>
  <ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
  <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>
  <CreateTime>1395658920</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>
  <MsgID>3717005636572528642</MsgID>
  <Status><![CDATA[failed:user block]]></Status>
</xml>`

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message
	}{
		{"TEMPLATESENDJOBFINISH with msgid above 2^53", jobFinishXML, Message{
			ToUserName: "gh_7f083739789a", FromUserName: "oia2TjuEGTNoeX76QEjQNrcURxG8", CreateTime: 1395658920,
			MsgType: "event", Event: EventTemplateSendJobFinish, MsgID: 3717005636572528642, Status: StatusUserBlock,
		}},
		{"user text message uses MsgId", `<?xml version="1.0"?><xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId></xml>`, Message{
			ToUserName: "toUser", FromUserName: "fromUser", CreateTime: 1348831860, MsgType: "text", Content: "this is a test", UserMsgID: 1234567890123456,
		}},
		{"subscribe event", `<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event><EventKey></EventKey></xml>`, Message{
			ToUserName: "gh_1", FromUserName: "o1", CreateTime: 1, MsgType: "event", Event: EventSubscribe,
		}},
		{"safe-mode envelope", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[abc=]]></Encrypt></xml>`, Message{ToUserName: "gh_1", Encrypt: "abc="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMessage([]byte(tt.in))
			require.NoError(t, err, "ParseMessage(%q)", tt.in)
			got.XMLName = tt.want.XMLName
			assert.Equal(t, tt.want, *got)
		})
	}
}

func TestParseMessageRejectsHostileInput(t *testing.T) {
	billionLaughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><xml><Content>&lol2;</Content></xml>`
	external := `<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>`
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"not xml", `{"ToUserName":"x"}`},
		{"entity expansion", billionLaughs},
		{"external entity", external},
		{"undefined entity", `<xml><Content>&lol;</Content></xml>`},
		{"deep nesting", "<xml>" + strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000) + "</xml>"},
		{"wrong root", `<root><ToUserName>x</ToUserName></root>`},
		{"two roots", `<xml></xml><xml></xml>`},
		{"unclosed", `<xml><ToUserName>x</ToUserName>`},
		{"mismatched tags", `<xml><ToUserName>x</FromUserName></xml>`},
		{"text outside root", `junk<xml></xml>`},
		{"processing instruction", `<?evil payload?><xml></xml>`},
		{"non-numeric MsgID", `<xml><MsgID>abc</MsgID></xml>`},
		{"msgid overflows int64", `<xml><MsgID>99999999999999999999</MsgID></xml>`},
		{"too large", "<xml><Content>" + strings.Repeat("a", MaxCallbackBytes) + "</Content></xml>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tt.in))
			assert.ErrorIs(t, err, ErrMalformedXML, "ParseMessage(%.60q)", tt.in)
			assert.Nil(t, m)
		})
	}
}

func TestMessageMarshal(t *testing.T) {
	m := &Message{ToUserName: "gh_1", FromUserName: "o1", CreateTime: 1700000000, MsgType: MsgTypeEvent,
		Event: EventTemplateSendJobFinish, MsgID: 3717005636572528642, Status: StatusSystemFailed}
	got, err := m.Bytes()
	require.NoError(t, err)
	want := `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>` +
		`<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>` +
		`<MsgID>3717005636572528642</MsgID><Status><![CDATA[failed: system failed]]></Status></xml>`
	assert.Equal(t, want, string(got))

	back, err := ParseMessage(got)
	require.NoError(t, err)
	back.XMLName = m.XMLName
	assert.Equal(t, *m, *back)

	tricky := &Message{ToUserName: "gh_1", Content: "a]]>b<c>&d"}
	b, err := tricky.Bytes()
	require.NoError(t, err)
	parsed, err := ParseMessage(b)
	require.NoError(t, err)
	assert.Equal(t, tricky.Content, parsed.Content, "CDATA must survive a ]]> inside the text")
}

func TestParseDeliveryStatus(t *testing.T) {
	tests := []struct {
		in   string
		want DeliveryResult
	}{
		{StatusSuccess, DeliveryResult{Delivered: true}},
		{StatusUserBlock, DeliveryResult{Reason: ReasonUserBlock}},
		{"failed: user block", DeliveryResult{Reason: ReasonUserBlock}},
		{StatusSystemFailed, DeliveryResult{Reason: ReasonSystemFailed}},
		{"failed:system failed", DeliveryResult{Reason: ReasonSystemFailed}},
		{StatusFreqLimit, DeliveryResult{Reason: ReasonFreqLimit}},
		{"failed:something new", DeliveryResult{Reason: ReasonFailed}},
		{"", DeliveryResult{Reason: ReasonFailed}},
		{"Success", DeliveryResult{Reason: ReasonFailed}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, ParseDeliveryStatus(tt.in), "ParseDeliveryStatus(%q)", tt.in)
		})
	}
}

func TestDedupKey(t *testing.T) {
	job := &Message{MsgType: MsgTypeEvent, Event: EventTemplateSendJobFinish, MsgID: 42, FromUserName: "o", CreateTime: 5}
	assert.Equal(t, "msgid:42:o", job.DedupKey())
	forged := *job
	forged.FromUserName = "o-attacker"
	assert.NotEqual(t, job.DedupKey(), forged.DedupKey(), "a report naming another user is not a retry of the real one")
	text := &Message{MsgType: MsgTypeText, UserMsgID: 7}
	assert.Equal(t, "usermsgid:7", text.DedupKey())
	sub := &Message{MsgType: MsgTypeEvent, Event: EventSubscribe, FromUserName: "o1", CreateTime: 9}
	assert.Equal(t, "event:o1:9:subscribe", sub.DedupKey())
}

func TestSealOpenCallbackAllModes(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: "cbtoken", AppID: "wx1234567890abcdef", EncodingAESKey: vecBKey, Rand: newSeededReader(3)})
	msg := &Message{ToUserName: "gh_abc", FromUserName: "oUser1", CreateTime: 1700000000, MsgType: MsgTypeEvent,
		Event: EventTemplateSendJobFinish, MsgID: 3717005636572528642, Status: StatusSuccess}
	for _, mode := range []Mode{ModePlain, ModeCompat, ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			q, body, err := c.SealCallback(msg, mode, 1700000001, "nonce1")
			require.NoError(t, err)
			assert.Equal(t, "oUser1", q.Get(ParamOpenID))
			assert.NotEmpty(t, q.Get(ParamSignature))
			switch mode {
			case ModePlain:
				assert.Empty(t, q.Get(ParamEncryptType))
				assert.NotContains(t, string(body), "<Encrypt>")
			case ModeCompat:
				assert.Equal(t, EncryptTypeAES, q.Get(ParamEncryptType))
				assert.Contains(t, string(body), "<Encrypt>")
				assert.Contains(t, string(body), "<Status>", "compatible mode keeps the plaintext fields")
			case ModeSafe:
				assert.Equal(t, EncryptTypeAES, q.Get(ParamEncryptType))
				assert.Contains(t, string(body), "<Encrypt>")
				assert.NotContains(t, string(body), "<Status>", "safe mode carries only ToUserName and Encrypt")
				assert.Contains(t, string(body), "gh_abc")
			}
			got, err := c.OpenCallback(q, body)
			require.NoError(t, err)
			got.XMLName = msg.XMLName
			assert.Equal(t, *msg, *got)
		})
	}
}

func TestOpenCallbackRejects(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: "cbtoken", AppID: "wx1234567890abcdef", EncodingAESKey: vecBKey})
	other := mustCrypter(t, CrypterConfig{Token: "cbtoken", AppID: "wxffffffffffffffff", EncodingAESKey: vecBKey})
	msg := &Message{ToUserName: "gh_abc", FromUserName: "o1", CreateTime: 1, MsgType: MsgTypeEvent, Event: EventTemplateSendJobFinish, MsgID: 9, Status: StatusSuccess}
	q, body, err := c.SealCallback(msg, ModeSafe, 100, "n")
	require.NoError(t, err)
	otherQ, otherBody, err := other.SealCallback(msg, ModeSafe, 100, "n")
	require.NoError(t, err)

	with := func(k, v string) url.Values {
		c := url.Values{}
		for key, vals := range q {
			c[key] = append([]string(nil), vals...)
		}
		if v == "" {
			c.Del(k)
		} else {
			c.Set(k, v)
		}
		return c
	}
	tests := []struct {
		name string
		q    url.Values
		body []byte
		want error
	}{
		{"bad signature", with(ParamSignature, strings.Repeat("0", 40)), body, ErrSignature},
		{"missing signature", with(ParamSignature, ""), body, ErrMissingSigParam},
		{"missing msg_signature", with(ParamMsgSignature, ""), body, ErrMissingSigParam},
		{"bad msg_signature", with(ParamMsgSignature, strings.Repeat("0", 40)), body, ErrSignature},
		{"timestamp changed", with(ParamTimestamp, "101"), body, ErrSignature},
		{"wrong appid trailer", otherQ, otherBody, ErrAppIDMismatch},
		{"no Encrypt element", q, []byte(`<xml><ToUserName>gh_abc</ToUserName></xml>`), ErrMissingEncrypt},
		{"malformed body", q, []byte(`<xml>`), ErrMalformedXML},
		{"outer ToUserName differs", q, bytes.Replace(body, []byte("gh_abc"), []byte("gh_xyz"), 1), ErrToUserMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := c.OpenCallback(tt.q, tt.body)
			assert.ErrorIs(t, err, tt.want)
			assert.Nil(t, m)
		})
	}
}

func TestVerifyURL(t *testing.T) {
	c := mustCrypter(t, CrypterConfig{Token: "AAAAA"})
	q := url.Values{ParamSignature: {"f464b24fc39322e44b38aa78f5edd27bd1441696"}, ParamTimestamp: {"1714036504"}, ParamNonce: {"1514711492"}, ParamEchoStr: {"4375120948345356249"}}
	echo, err := c.VerifyURL(q)
	require.NoError(t, err)
	assert.Equal(t, "4375120948345356249", echo)

	q.Set(ParamNonce, "1514711493")
	_, err = c.VerifyURL(q)
	assert.ErrorIs(t, err, ErrSignature)
	_, err = c.VerifyURL(url.Values{})
	assert.ErrorIs(t, err, ErrMissingSigParam)
}

func TestEncryptedReplyXML(t *testing.T) {
	r := EncryptedReply{Encrypt: vecAReplyEnc, MsgSignature: vecAReplySig, TimeStamp: 1713424427, Nonce: vecANonce}
	b, err := xml.Marshal(r)
	require.NoError(t, err)
	assert.Equal(t, `<xml><Encrypt><![CDATA[`+vecAReplyEnc+`]]></Encrypt><MsgSignature><![CDATA[`+vecAReplySig+`]]></MsgSignature><TimeStamp>1713424427</TimeStamp><Nonce><![CDATA[415670741]]></Nonce></xml>`, string(b))
	var back EncryptedReply
	require.NoError(t, xml.Unmarshal(b, &back))
	assert.Equal(t, r, back)

	c := mustCrypter(t, CrypterConfig{Token: vecAToken, AppID: vecAAppID, EncodingAESKey: vecAKey})
	sealed, err := c.SealReply([]byte("<xml>reply</xml>"), 1713424427, "n1")
	require.NoError(t, err)
	got, err := c.OpenReply(sealed)
	require.NoError(t, err)
	assert.Equal(t, "<xml>reply</xml>", string(got))
	sealed.Nonce = "n2"
	_, err = c.OpenReply(sealed)
	assert.ErrorIs(t, err, ErrSignature)
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModePlain, "plain": ModePlain, "compat": ModeCompat, "safe": ModeSafe} {
		got, err := ParseMode(in)
		require.NoError(t, err, "ParseMode(%q)", in)
		assert.Equal(t, want, got)
	}
	_, err := ParseMode("aes")
	assert.ErrorContains(t, err, "must be plain, compat or safe")
}
