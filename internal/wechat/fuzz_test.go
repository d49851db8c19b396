package wechat

import (
	"errors"
	"net/url"
	"testing"
)

// FuzzParseMessage: no callback body may panic the parser, and whatever it
// accepts must survive a marshal/parse round trip.
func FuzzParseMessage(f *testing.F) {
	f.Add([]byte(jobFinishXML))
	f.Add([]byte(`<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[abc=]]></Encrypt></xml>`))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedXML) {
				t.Fatalf("ParseMessage(%q): error %v does not wrap ErrMalformedXML", data, err)
			}
			return
		}
		b, err := m.Bytes()
		if err != nil {
			t.Fatalf("Bytes of a parsed message: %v", err)
		}
		back, err := ParseMessage(b)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b, err)
		}
		back.XMLName = m.XMLName
		if *back != *m {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", *back, *m)
		}
	})
}

// FuzzDecrypt: no envelope may panic Decrypt; a successful decrypt must
// re-encrypt and decrypt to the same message.
func FuzzDecrypt(f *testing.F) {
	f.Add(vecAEncrypt)
	f.Add(vecAReplyEnc)
	f.Add("")
	f.Add("AAAA")
	c, err := NewCrypter(CrypterConfig{Token: vecAToken, AppID: vecAAppID, EncodingAESKey: vecAKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, enc string) {
		msg, err := c.Decrypt(enc)
		if err != nil {
			return
		}
		again, err := c.Encrypt(msg)
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		back, err := c.Decrypt(again)
		if err != nil || string(back) != string(msg) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

// FuzzOpenCallback: hostile query parameters and bodies never panic the
// callback opener, and nothing unsigned is ever accepted.
func FuzzOpenCallback(f *testing.F) {
	f.Add(vecBSignature, vecBTimestamp, vecBNonce, "aes", vecBMsgSig,
		[]byte("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA["+vecBEncrypt+"]]></Encrypt></xml>"))
	f.Add("", "", "", "", "", []byte("<xml/>"))
	c, err := NewCrypter(CrypterConfig{Token: vecBToken, AppID: vecBAppID, EncodingAESKey: vecBKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig, ts, nonce, encType, msgSig string, body []byte) {
		q := url.Values{ParamSignature: {sig}, ParamTimestamp: {ts}, ParamNonce: {nonce}, ParamEncryptType: {encType}, ParamMsgSignature: {msgSig}}
		m, err := c.OpenCallback(q, body)
		if err != nil {
			return
		}
		if m == nil || !c.Verify(sig, ts, nonce) {
			t.Fatalf("accepted a callback without a valid signature")
		}
	})
}
