package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Cookies of the console. Both are Secure, HttpOnly, SameSite=Strict and
// limited to Path.
const (
	// CookieName holds the session: "v1.<nonce>.<expiry>.<key fingerprint>.<mac>".
	CookieName = "wxpush_console"
	// FlashCookieName holds the message shown once after an action (signed).
	FlashCookieName = "wxpush_console_flash"
	// Path is where the console lives, and the cookies' path.
	Path = "/console"
)

// DefaultSessionTTL is Options.SessionTTL's default.
const DefaultSessionTTL = 12 * time.Hour

// maxCookie bounds the cookie values the console parses.
const maxCookie = 512

// openFingerprint stands for the key of an anonymous session, made when
// the console runs without API keys. It is not base64 of 16 bytes, so no
// key's fingerprint equals it.
const openFingerprint = "open"

// encoding of every binary part of cookies and tokens.
var b64 = base64.RawURLEncoding

// sign returns HMAC-SHA256(secret, purpose NUL part NUL part ...): each
// purpose (session, key, csrf, flash) signs in its own domain.
func sign(secret []byte, purpose string, parts ...string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	for _, p := range parts {
		m.Write([]byte{0})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// fingerprint identifies an API key in a session cookie without
// revealing it: without the secret it cannot be checked against a guess.
func fingerprint(secret []byte, key wechat.Secret) string {
	return b64.EncodeToString(sign(secret, "wxpush-console-key", key.Reveal())[:16])
}

// newSession returns a session cookie value for the key with fingerprint
// fp, valid until now+ttl.
func newSession(secret []byte, fp string, now time.Time, ttl time.Duration) (value string, expires time.Time) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand crashes the program instead)
	expires = now.Add(ttl).Truncate(time.Second)
	return sessionValue(secret, nonce[:], expires, fp), expires
}

// sessionValue is the signed cookie value of a session.
func sessionValue(secret, nonce []byte, expires time.Time, fp string) string {
	parts := []string{"v1", b64.EncodeToString(nonce), strconv.FormatInt(expires.Unix(), 10), fp}
	mac := sign(secret, "wxpush-console-session", parts...)
	return strings.Join(parts, ".") + "." + b64.EncodeToString(mac)
}

// verifySession reports whether value is a session cookie signed with
// secret, not expired at now, and made for one of keys (for an anonymous
// session when keys is empty). The MAC and the fingerprints are compared
// in constant time, and every key is tried whether or not one matched.
func verifySession(secret []byte, keys []wechat.Secret, value string, now time.Time) bool {
	if len(value) > maxCookie {
		return false
	}
	parts := strings.Split(value, ".")
	if len(parts) != 5 || parts[0] != "v1" {
		return false
	}
	mac, err := b64.DecodeString(parts[4])
	if err != nil || !hmac.Equal(mac, sign(secret, "wxpush-console-session", parts[:4]...)) {
		return false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || now.Unix() >= exp {
		return false
	}
	if len(keys) == 0 {
		return parts[3] == openFingerprint
	}
	match := 0
	for _, k := range keys {
		match |= subtle.ConstantTimeCompare([]byte(fingerprint(secret, k)), []byte(parts[3]))
	}
	return match == 1
}

// csrfToken is the CSRF token of the session whose cookie value is
// session: every state-changing form carries it.
func csrfToken(secret []byte, session string) string {
	return b64.EncodeToString(sign(secret, "wxpush-console-csrf", session))
}

// validCSRF reports, in constant time, whether token is the session's
// CSRF token.
func validCSRF(secret []byte, session, token string) bool {
	got, err := b64.DecodeString(token)
	return err == nil && hmac.Equal(got, sign(secret, "wxpush-console-csrf", session))
}

// keyIndex returns the position of key among keys, or -1, comparing the
// SHA-256 of each in constant time (the hashes hide the keys' lengths)
// and visiting every key whether or not one matched.
func keyIndex(keys []wechat.Secret, key string) int {
	sum := sha256.Sum256([]byte(key))
	idx := -1
	for i, k := range keys {
		ks := sha256.Sum256([]byte(k.Reveal()))
		idx = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], ks[:]), i, idx)
	}
	return idx
}

// flash is a message shown once, on the page after an action.
type flash struct {
	Kind string `json:"k"` // "ok" or "error"
	Text string `json:"t"`
}

// encodeFlash signs f for the flash cookie.
func encodeFlash(secret []byte, f flash) string {
	b, _ := json.Marshal(f) // two strings: cannot fail
	payload := b64.EncodeToString(b)
	return payload + "." + b64.EncodeToString(sign(secret, "wxpush-console-flash", payload))
}

// decodeFlash returns the flash a cookie value holds, if it is signed with
// secret.
func decodeFlash(secret []byte, value string) (flash, bool) {
	var f flash
	payload, mac, ok := strings.Cut(value, ".")
	if !ok || len(value) > 4*maxCookie {
		return f, false
	}
	got, err := b64.DecodeString(mac)
	if err != nil || !hmac.Equal(got, sign(secret, "wxpush-console-flash", payload)) {
		return f, false
	}
	b, err := b64.DecodeString(payload)
	if err != nil || json.Unmarshal(b, &f) != nil || (f.Kind != "ok" && f.Kind != "error") {
		return flash{}, false
	}
	return f, true
}

// setCookie sets a console cookie: Secure, HttpOnly, SameSite=Strict,
// Path /console. A zero expires deletes it.
func setCookie(c *gin.Context, name, value string, expires, now time.Time) {
	ck := &http.Cookie{
		Name: name, Value: value, Path: Path,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	}
	if expires.IsZero() {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires.UTC()
		ck.MaxAge = max(int(expires.Sub(now).Seconds()), 1)
	}
	http.SetCookie(c.Writer, ck)
}
