package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
)

// checkTexts refuses control characters and bidirectional overrides in
// the strings of req outside data, in field order.
func checkTexts(req *service.SendRequest) *service.Error {
	for _, f := range [...]struct{ name, v string }{
		{"app", req.App}, {"touser", req.ToUser}, {"template_id", req.TemplateID}, {"url", req.URL},
	} {
		if e := checkText(f.name, f.v); e != nil {
			return e
		}
	}
	if mp := req.MiniProgram; mp != nil {
		if e := checkText("miniprogram.appid", mp.AppID); e != nil {
			return e
		}
		if e := checkText("miniprogram.pagepath", mp.PagePath); e != nil {
			return e
		}
	}
	return nil // data: validateData checks its keys and values
}

// checkText refuses, as a 400 naming field, a string that holds a C0
// control character other than tab and newline (NUL, CR, ESC...) or a
// Unicode bidirectional override or isolate (U+202A-U+202E,
// U+2066-U+2069), which could hide or reorder what a user reads.
func checkText(field, s string) *service.Error {
	if r, bad := badRune(s); bad {
		return textError(field, r)
	}
	return nil
}

// textError is checkText's error for character r in field.
func textError(field string, r rune) *service.Error {
	return invalid(field, "%s must not hold control characters (except tab and newline) or bidirectional overrides; found %U", field, r)
}

// badRune returns the first refused character of s (see checkText). It
// scans bytes: the overrides are E2 80 AA-AE and E2 81 A6-A9 in UTF-8.
func badRune(s string) (rune, bool) {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b < 0x20 && b != '\t' && b != '\n':
			return rune(b), true
		case b == 0xE2 && i+2 < len(s):
			if s[i+1] == 0x80 && 0xAA <= s[i+2] && s[i+2] <= 0xAE || s[i+1] == 0x81 && 0xA6 <= s[i+2] && s[i+2] <= 0xA9 {
				r, _ := utf8.DecodeRuneInString(s[i:])
				return r, true
			}
		}
	}
	return 0, false
}

// Limits of a send request.
const (
	maxIDLen       = 64   // touser, template_id, miniprogram.appid, data keys
	maxURLLen      = 1024 // bytes
	maxPagePathLen = 256  // bytes
	maxDataKeys    = 50
	maxValueRunes  = 2048
	maxIdemKeyLen  = 255
	defaultAppName = "default"
)

// Validate checks req and normalizes it: on success req.App is set to the
// resolved app name (an empty App resolves to the only app in apps, or to
// "default" when it is configured) and nothing else changes. On failure it
// returns a 400 invalid_request error whose Field names the first problem,
// and req is unchanged. Checks run in field order (app, touser,
// template_id, url, miniprogram, data), data keys in sorted order.
func Validate(req *service.SendRequest, apps []string) *service.Error {
	if e := checkTexts(req); e != nil {
		return e
	}
	app, e := resolveApp(req.App, apps)
	if e != nil {
		return e
	}
	switch {
	case req.ToUser == "":
		return invalid("touser", "touser is required")
	case !isName(req.ToUser, true):
		return invalid("touser", `touser must be 1-64 letters, digits, "_" or "-"`)
	}
	switch {
	case req.TemplateID == "":
		return invalid("template_id", "template_id is required")
	case !validTemplateID(req.TemplateID):
		return invalid("template_id", "template_id must be 1-64 characters without whitespace")
	}
	if req.URL != "" {
		if len(req.URL) > maxURLLen {
			return invalid("url", "url must be at most %d bytes", maxURLLen)
		}
		if !validURL(req.URL) {
			return invalid("url", "url must be an absolute http or https URL")
		}
	}
	if mp := req.MiniProgram; mp != nil {
		switch {
		case mp.AppID == "":
			return invalid("miniprogram.appid", "miniprogram.appid is required")
		case !isName(mp.AppID, false):
			return invalid("miniprogram.appid", `miniprogram.appid must be 1-64 letters, digits or "_"`)
		case len(mp.PagePath) > maxPagePathLen:
			return invalid("miniprogram.pagepath", "miniprogram.pagepath must be at most %d bytes", maxPagePathLen)
		}
	}
	if e := validateData(req.Data); e != nil {
		return e
	}
	req.App = app
	return nil
}

// resolveApp returns the configured app a request names.
func resolveApp(name string, apps []string) (string, *service.Error) {
	if name != "" {
		if !slices.Contains(apps, name) {
			return "", invalid("app", "app %q is not configured", clip(name))
		}
		return name, nil
	}
	switch {
	case len(apps) == 1:
		return apps[0], nil
	case slices.Contains(apps, defaultAppName):
		return defaultAppName, nil
	case len(apps) == 0:
		return "", invalid("app", "app is required, and no app is configured")
	default:
		return "", invalid("app", `app is required: several apps are configured and none is named "default"`)
	}
}

// validateData checks the template data, keys in sorted order so the first
// problem reported is deterministic.
func validateData(data map[string]service.DataValue) *service.Error {
	switch {
	case len(data) == 0:
		return invalid("data", "data is required: at least one template field")
	case len(data) > maxDataKeys:
		return invalid("data", "data must have at most %d keys", maxDataKeys)
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if r, bad := badRune(k); bad {
			return invalid("data", "data key %q must not hold control characters (except tab and newline) or bidirectional overrides; found %U", clip(k), r)
		}
		if !isName(k, false) {
			return invalid("data", `data key %q must be 1-64 letters, digits or "_"`, clip(k))
		}
		v := data[k]
		field := "data." + k + ".value"
		if r, bad := badRune(v.Value); bad {
			return textError(field, r)
		}
		if r, bad := badRune(v.Color); bad { // the field name is built only for the error
			return textError("data."+k+".color", r)
		}
		switch {
		case v.Value == "":
			return invalid(field, "%s is required (WeChat rejects empty values)", field)
		case !utf8.ValidString(v.Value):
			return invalid(field, "%s must be valid UTF-8", field)
		case utf8.RuneCountInString(v.Value) > maxValueRunes:
			return invalid(field, "%s must be at most %d characters", field, maxValueRunes)
		}
		if v.Color != "" && !validColor(v.Color) {
			field := "data." + k + ".color"
			return invalid(field, `%s must be a color like "#FF0000"`, field)
		}
	}
	return nil
}

// isName reports whether s is 1-64 ASCII letters, digits and "_" (and "-"
// when dash is set).
func isName(s string, dash bool) bool {
	if len(s) < 1 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !isAlnum(b) && b != '_' && (!dash || b != '-') {
			return false
		}
	}
	return true
}

// isAlnum reports whether b is an ASCII letter or digit.
func isAlnum(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// validTemplateID reports whether id is 1-64 characters of valid UTF-8
// with no whitespace or control characters.
func validTemplateID(id string) bool {
	if !utf8.ValidString(id) || utf8.RuneCountInString(id) > maxIDLen {
		return false
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return id != ""
}

// validURL reports whether s is an absolute http(s) URL with a host.
func validURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == ""
}

// validColor reports whether s is "#RRGGBB" in hex digits.
func validColor(s string) bool {
	if len(s) != 7 || s[0] != '#' {
		return false
	}
	_, err := hex.DecodeString(s[1:])
	return err == nil
}

// validIdempotencyKey reports whether k is 1-255 printable ASCII
// characters (space through "~").
func validIdempotencyKey(k string) bool {
	if len(k) < 1 || len(k) > maxIdemKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// validMessageID reports whether id looks like a message id: 1-64 of
// [A-Za-z0-9_-]. Others cannot exist, so they are answered 404 without a
// store lookup.
func validMessageID(id string) bool {
	return isName(id, true)
}

// RequestHash returns the hex SHA-256 of the canonical JSON of a
// normalized request (wechat.Marshal: no HTML escaping, map keys sorted).
// The store compares it when an idempotency key is reused: the same key
// with the same hash replays, another hash conflicts.
func RequestHash(req service.SendRequest) string {
	_, hash := canonical(req)
	return hash
}

// canonical returns the request's canonical JSON (no HTML escaping, map
// keys sorted) and its hex SHA-256: the idempotency hash, and the bytes the
// store keeps, computed once.
func canonical(req service.SendRequest) ([]byte, string) {
	b, err := wechat.Marshal(req)
	if err != nil {
		// SendRequest holds only strings, a pointer to strings and a map
		// of them: encoding cannot fail.
		panic(fmt.Sprintf("httpapi: encoding a SendRequest: %v", err))
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}
