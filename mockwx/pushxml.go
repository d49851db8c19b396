package mockwx

import (
	"bytes"
	"encoding/xml"
	"net/url"
	"strconv"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Element is one child element of a pushed <xml>: text, written in CDATA,
// or a bare number (integer or decimal) when Number is set. An empty text
// element is written (<EventKey><![CDATA[]]></EventKey>), as WeChat does.
type Element struct {
	Name   string
	Value  string
	Number bool
}

// writeElements writes <xml> with head's ToUserName, FromUserName and
// CreateTime, then extra, then Encrypt when enc is set.
func writeElements(head *wechat.Message, extra []Element, enc string) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	cdata := func(name, v string) {
		b.WriteString("<" + name + "><![CDATA[")
		// "]]>" cannot appear inside one CDATA section: split it.
		b.Write(bytes.ReplaceAll([]byte(v), []byte("]]>"), []byte("]]]]><![CDATA[>")))
		b.WriteString("]]></" + name + ">")
	}
	cdata("ToUserName", head.ToUserName)
	cdata("FromUserName", head.FromUserName)
	b.WriteString("<CreateTime>" + strconv.FormatInt(head.CreateTime, 10) + "</CreateTime>")
	for _, e := range extra {
		if e.Number {
			b.WriteString("<" + e.Name + ">")
			_ = xml.EscapeText(&b, []byte(e.Value))
			b.WriteString("</" + e.Name + ">")
			continue
		}
		cdata(e.Name, e.Value)
	}
	if enc != "" {
		cdata("Encrypt", enc)
	}
	b.WriteString("</xml>")
	return b.Bytes()
}

// sealElements builds the request WeChat POSTs for a user event or message
// in mode, like wechat.Crypter.SealCallback: query signature, timestamp,
// nonce, openid (and encrypt_type=aes, msg_signature when encrypted); the
// body is the plaintext XML (plain), the plaintext plus Encrypt (compat),
// or ToUserName and Encrypt (safe).
func sealElements(c *wechat.Crypter, mode wechat.Mode, head *wechat.Message, extra []Element, timestamp int64, nonce string) (url.Values, []byte, error) {
	ts := strconv.FormatInt(timestamp, 10)
	q := url.Values{}
	q.Set(wechat.ParamSignature, c.Sign(ts, nonce))
	q.Set(wechat.ParamTimestamp, ts)
	q.Set(wechat.ParamNonce, nonce)
	q.Set(wechat.ParamOpenID, head.FromUserName)
	plain := writeElements(head, extra, "")
	if mode == wechat.ModePlain {
		return q, plain, nil
	}
	enc, err := c.Encrypt(plain)
	if err != nil {
		return nil, nil, err
	}
	var body []byte
	if mode == wechat.ModeCompat {
		body = writeElements(head, extra, enc)
	} else {
		var b bytes.Buffer
		b.WriteString("<xml><ToUserName><![CDATA[" + head.ToUserName + "]]></ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>")
		body = b.Bytes()
	}
	q.Set(wechat.ParamEncryptType, wechat.EncryptTypeAES)
	q.Set(wechat.ParamMsgSignature, c.Sign(ts, nonce, enc))
	return q, body, nil
}
