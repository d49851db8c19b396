package callback_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/callback"
)

// Ways FuzzCallback delivers its body.
const (
	fuzzPlain  = iota // signed, as the plaintext push
	fuzzSafe          // encrypted into a safe-mode envelope, both signatures valid
	fuzzForged        // a wrong signature
	fuzzModes
)

// FuzzCallback posts arbitrary push bodies to the endpoint with a healthy
// store. A properly signed body (plain, or sealed in a safe-mode envelope)
// is answered "success" only if internal/wechat parses it, and otherwise
// with a 400 or 413 error; a forged one is always a 403 and records
// nothing; the answer is never a 5xx. Seeds live in
// testdata/fuzz/FuzzCallback.
func FuzzCallback(f *testing.F) {
	e := newEnv(f, func(o *callback.Options) { o.Logger = nil }) // discard: the log would grow for the whole run
	for _, mode := range []uint8{fuzzPlain, fuzzSafe, fuzzForged} {
		for _, m := range []*wechat.Message{report(1, wechat.StatusSuccess), report(2, "failed:user block"),
			{ToUserName: originalID, FromUserName: "oUser", CreateTime: 1, MsgType: wechat.MsgTypeEvent, Event: wechat.EventSubscribe}} {
			b, err := m.Bytes()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(mode, b)
		}
		f.Add(mode, []byte(`<!DOCTYPE x [<!ENTITY a "b">]><xml><Status>&a;</Status></xml>`))
		f.Add(mode, []byte("<xml>"+strings.Repeat("<a>", 10)+"</xml>"))
	}
	ts := strconv.FormatInt(fixedNow.Unix(), 10)
	f.Fuzz(func(t *testing.T, mode uint8, body []byte) {
		mode %= fuzzModes
		// A fresh nonce per call, as WeChat's pushes have: the replay guard
		// refuses a signed query seen before with another body.
		var nb [8]byte
		_, _ = rand.Read(nb[:])
		nonce := hex.EncodeToString(nb[:])
		q := url.Values{"signature": {wechat.Signature(cbToken, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}
		post := body
		switch mode {
		case fuzzSafe:
			enc, err := e.sender.Encrypt(body)
			if err != nil {
				t.Fatal(err)
			}
			to := originalID
			if m, err := wechat.ParseMessage(body); err == nil {
				to = m.ToUserName
			}
			if post, err = (&wechat.Message{ToUserName: to, Encrypt: enc}).Bytes(); err != nil {
				t.Skip("the envelope cannot be built for this ToUserName")
			}
			q.Set("encrypt_type", "aes")
			q.Set("msg_signature", e.sender.Sign(ts, nonce, enc))
		case fuzzForged:
			q.Set("signature", strings.Repeat("0", 40))
		}
		recorded := func() float64 {
			return counterValue(t, e.metrics.Callbacks.WithLabelValues(appName, callback.ResultReport)) +
				counterValue(t, e.metrics.Callbacks.WithLabelValues(appName, callback.ResultEvent))
		}
		before := recorded()
		rec := e.post(appName, q, post)
		after := recorded()

		if rec.Code >= 500 {
			t.Fatalf("mode %d body %q: status %d (%s)", mode, body, rec.Code, rec.Body)
		}
		_, parseErr := wechat.ParseMessage(body)
		switch rec.Code {
		case http.StatusOK:
			if mode == fuzzForged {
				t.Fatalf("body %q: a forged push was accepted", body)
			}
			if parseErr != nil {
				t.Fatalf("mode %d body %q: accepted, but ParseMessage says %v", mode, body, parseErr)
			}
			if rec.Body.String() != "success" {
				t.Fatalf("mode %d body %q: answer %q, want success", mode, body, rec.Body)
			}
		case http.StatusForbidden:
			if mode != fuzzForged {
				t.Fatalf("mode %d body %q: a properly signed push was refused as forged", mode, body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if mode == fuzzForged {
				t.Fatalf("body %q: a forged push got %d, want 403", body, rec.Code)
			}
		default:
			t.Fatalf("mode %d body %q: status %d", mode, body, rec.Code)
		}
		if rec.Code != http.StatusOK && after != before {
			t.Fatalf("mode %d body %q: refused with %d but recorded", mode, body, rec.Code)
		}
	})
}
