// Package redisurl checks the Redis URLs the programs are given before
// go-redis parses them, so a common slip (host:port without redis://) gets
// an error that says what to write instead of go-redis's "invalid URL
// scheme: localhost". Errors never show a password.
package redisurl

import (
	"fmt"
	"net/url"
	"strings"
)

// Hint ends every error: the form of a Redis URL.
const Hint = "use redis://host:6379/0"

// Schemes are the URL schemes wxpushd's Redis client understands.
var Schemes = []string{"redis", "rediss", "unix", "cluster+redis", "cluster+rediss"}

// Check returns nil when raw starts with one of Schemes, else an error
// with Hint (and, when raw looks like host:port, the URL it meant). The
// error shows raw with any password replaced by "xxxxx".
func Check(raw string) error {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		shown := redactSchemeless(raw)
		if looksLikeHostPort(raw) {
			return fmt.Errorf("redis URL %q has no scheme: %s (here redis://%s)", shown, Hint, withDB(shown))
		}
		return fmt.Errorf("redis URL %q has no scheme: %s", shown, Hint)
	}
	for _, s := range Schemes {
		if strings.EqualFold(scheme, s) {
			return nil
		}
	}
	return fmt.Errorf("redis URL %q: unknown scheme %q (want %s): %s", redact(raw, scheme, rest), clip(scheme), strings.Join(Schemes, "://, ")+"://", Hint)
}

// looksLikeHostPort reports whether s is host:port, optionally /db.
func looksLikeHostPort(s string) bool {
	hostport, db, _ := strings.Cut(s, "/")
	if strings.ContainsAny(db, "/?#") {
		return false
	}
	i := strings.LastIndexByte(hostport, ':')
	if i <= 0 || i == len(hostport)-1 {
		return false
	}
	for _, r := range hostport[i+1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// withDB adds /0 when s names no database.
func withDB(s string) string {
	if strings.Contains(s, "/") {
		return s
	}
	return s + "/0"
}

// redactSchemeless hides what precedes an @ (user:password@host:port).
func redactSchemeless(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return clip("xxxxx" + s[i:])
	}
	return clip(s)
}

// redact shows a URL with a scheme without its password.
func redact(raw, scheme, rest string) string {
	if u, err := url.Parse(raw); err == nil {
		return clip(u.Redacted())
	}
	return clip(scheme + "://" + redactSchemeless(rest))
}

func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Redacted is raw as an error may show it: any password (everything
// before the last @ of the authority, found textually, so that it works
// for URLs url.Parse refuses) replaced by "xxxxx".
func Redacted(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return redactSchemeless(raw)
	}
	return redact(raw, scheme, rest)
}

// HideSecret returns err with raw's user information (user:password)
// replaced by "xxxxx" wherever its text shows it: the errors of parsers
// that quote the URL they were given (go-redis, net/url) pass through it
// before anyone prints them. nil stays nil.
func HideSecret(err error, raw string) error {
	if err == nil {
		return nil
	}
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	// The last @ anywhere: a password may hold / or ?, and hiding too
	// much of an error is better than too little.
	at := strings.LastIndexByte(rest, '@')
	if at <= 0 {
		return err
	}
	userinfo := rest[:at]
	msg := err.Error()
	for _, s := range []string{userinfo, url.PathEscape(userinfo), url.QueryEscape(userinfo)} {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return secretError{msg: msg, err: err}
}

// secretError is an error whose text hides a secret; Unwrap keeps errors.Is
// working (the wrapped error's own text must not be printed).
type secretError struct {
	msg string
	err error
}

func (e secretError) Error() string { return e.msg }
func (e secretError) Unwrap() error { return e.err }
