package console

import (
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
)

// FuzzVerifySession: no cookie value an attacker sends makes the parser
// panic or accepts it, since none carries the MAC.
func FuzzVerifySession(f *testing.F) {
	secret := testSecret()
	// Deterministic, so that every fuzzing process has the same one.
	good := sessionValue(secret, make([]byte, 16), t0.Add(time.Hour), fingerprint(secret, testKey))
	f.Add(good)
	f.Add("v1....")
	f.Add("v1.AAAA.9999999999.open.AAAA")
	f.Add("")
	other := []byte("another-secret-0123456789abcdefg")
	keys := []wechat.Secret{testKey}
	f.Fuzz(func(t *testing.T, v string) {
		if verifySession(other, keys, v, t0) {
			t.Fatalf("a cookie not signed with the secret was accepted: %q", v)
		}
		if verifySession(secret, keys, v, t0) && v != good {
			t.Fatalf("a forged cookie was accepted: %q", v)
		}
	})
}

// FuzzDecodeFlash: a flash cookie is shown only when signed.
func FuzzDecodeFlash(f *testing.F) {
	secret := testSecret()
	good := encodeFlash(secret, flash{Kind: "ok", Text: "Message X redriven."})
	f.Add(good)
	f.Add("e30.AAAA")
	f.Add(".")
	f.Fuzz(func(t *testing.T, v string) {
		fl, ok := decodeFlash(secret, v)
		if ok && v != good {
			// Another encoding of the same signed payload is not possible:
			// the MAC covers the payload's exact bytes.
			t.Fatalf("a forged flash was accepted: %q -> %+v", v, fl)
		}
	})
}
