package wechat

import (
	"errors"
	"fmt"
)

// Class says how a caller reacts to an outcome of a WeChat call.
type Class int

// The classes, from most to least hopeful. The zero value is ClassOK.
const (
	// ClassOK: the call succeeded.
	ClassOK Class = iota
	// ClassRetry: a transient failure (-1, transport errors, HTTP 5xx,
	// timeouts). Retry with backoff, resending the same client_msg_id.
	ClassRetry
	// ClassTokenInvalid: the access_token is superseded, malformed or
	// expired (40001, 40014, 42001). Refresh the token, then retry.
	ClassTokenInvalid
	// ClassPace: the per-minute frequency limit (45011). Pause the app for
	// at least PaceBackoff, then retry.
	ClassPace
	// ClassQuota: a daily quota is used up (45009). Pause the app until the
	// quota resets or an operator clears it; messages wait, they do not fail.
	ClassQuota
	// ClassPermanentMessage: this message can never succeed as it is
	// (bad openid, bad template, bad data, user not following...). Fail it
	// without retrying.
	ClassPermanentMessage
	// ClassPermanentApp: nothing this app sends can succeed until an operator
	// acts (bad appid or secret, IP not whitelisted, API unauthorized...).
	// Stop the app and alert; do not burn messages through retries.
	ClassPermanentApp
)

var classNames = [...]string{
	ClassOK:               "ok",
	ClassRetry:            "retry",
	ClassTokenInvalid:     "token_invalid",
	ClassPace:             "pace",
	ClassQuota:            "quota",
	ClassPermanentMessage: "permanent_message",
	ClassPermanentApp:     "permanent_app",
}

// String returns the class's stable snake_case name, used in metrics and logs.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// CodeInfo describes one errcode: what it means, the errmsg WeChat sends
// today (without the " rid: ..." suffix) and how callers react to it.
type CodeInfo struct {
	Code    int
	ErrMsg  string // live errmsg form; a mock appends " rid: ..."
	Meaning string
	Class   Class
	// Known is false for codes missing from the table: they are classified
	// conservatively as ClassPermanentMessage (never retried blindly, never
	// stopping a whole app) and Meaning says so.
	Known bool
}

// The errcodes callers branch on by name.
const (
	CodeSystemBusy        = -1
	CodeOK                = 0
	CodeInvalidCredential = 40001
	CodeInvalidGrantType  = 40002
	CodeInvalidOpenID     = 40003
	CodeInvalidAppID      = 40013
	CodeInvalidToken      = 40014
	CodeTemplateIDSize    = 40036
	CodeInvalidTemplateID = 40037
	CodeInvalidAppSecret  = 40125
	CodeIPNotWhitelisted  = 40164
	CodeInvalidPagePath   = 40165
	CodeTokenMissing      = 41001
	CodeAppIDMissing      = 41002
	CodeSecretMissing     = 41004
	CodeTokenExpired      = 42001
	CodeRequirePost       = 43002
	CodeRequireSubscribe  = 43004
	CodeUserBlacklisted   = 43019
	CodeEmptyPostData     = 44002
	CodeQuotaExceeded     = 45009
	CodeMinuteQuota       = 45011
	CodeDataFormatError   = 47001
	CodeArgumentInvalid   = 47003
	CodeAPIUnauthorized   = 48001
	CodeClearQuotaLimit   = 48006
)

// codeTable is the errcode taxonomy: every code in the protocol reference
// (§9 and the per-endpoint tables), once. Both wxpushd and mockwx read it.
var codeTable = map[int]CodeInfo{
	-1:    {ErrMsg: "system error", Meaning: "WeChat is busy; retry later", Class: ClassRetry},
	0:     {ErrMsg: "ok", Meaning: "success", Class: ClassOK},
	40001: {ErrMsg: "invalid credential, access_token is invalid or not latest", Meaning: "access_token superseded, wrong or for another account", Class: ClassTokenInvalid},
	40002: {ErrMsg: "invalid grant_type", Meaning: "grant_type must be client_credential", Class: ClassPermanentApp},
	40003: {ErrMsg: "invalid openid", Meaning: "openid malformed or of another app", Class: ClassPermanentMessage},
	40013: {ErrMsg: "invalid appid", Meaning: "AppID is wrong", Class: ClassPermanentApp},
	40014: {ErrMsg: "invalid access_token", Meaning: "access_token is not a well-formed token", Class: ClassTokenInvalid},
	40033: {ErrMsg: "invalid charset. please check your request, if include \\uxxxx will create fail!", Meaning: "request contains \\uxxxx escapes WeChat cannot accept", Class: ClassPermanentMessage},
	40036: {ErrMsg: "invalid template_id size", Meaning: "template_id empty or too long", Class: ClassPermanentMessage},
	40037: {ErrMsg: "invalid template_id", Meaning: "template_id unknown or of another app", Class: ClassPermanentMessage},
	40125: {ErrMsg: "invalid appsecret", Meaning: "AppSecret is wrong", Class: ClassPermanentApp},
	40164: {ErrMsg: "invalid ip, not in whitelist", Meaning: "caller IP is not in the API IP whitelist", Class: ClassPermanentApp},
	40165: {ErrMsg: "invalid weapp pagepath", Meaning: "mini program page is not in the released version", Class: ClassPermanentMessage},
	40201: {ErrMsg: "invalid url", Meaning: "callback URL missing or invalid", Class: ClassPermanentMessage},
	40202: {ErrMsg: "invalid action", Meaning: "callback check action invalid", Class: ClassPermanentMessage},
	40203: {ErrMsg: "invalid check_operator", Meaning: "callback check operator invalid", Class: ClassPermanentMessage},
	40241: {ErrMsg: "The message is duplicate in 60 seconds", Meaning: "duplicate message within 60 s (undocumented); an earlier send was accepted", Class: ClassPermanentMessage},
	40243: {ErrMsg: "AppSecret is frozen", Meaning: "AppSecret frozen by the account admin", Class: ClassPermanentApp},
	40249: {ErrMsg: "this template msg has been blocked for illegal content", Meaning: "template blocked for illegal content", Class: ClassPermanentMessage},
	41001: {ErrMsg: "access_token missing", Meaning: "access_token query parameter absent (a client bug)", Class: ClassPermanentMessage},
	41002: {ErrMsg: "appid missing", Meaning: "appid parameter absent", Class: ClassPermanentApp},
	41004: {ErrMsg: "appsecret missing", Meaning: "secret parameter absent", Class: ClassPermanentApp},
	41030: {ErrMsg: "invalid page", Meaning: "page path invalid (subscription messages)", Class: ClassPermanentMessage},
	42001: {ErrMsg: "access_token expired", Meaning: "access_token lifetime is over", Class: ClassTokenInvalid},
	43002: {ErrMsg: "require POST method", Meaning: "endpoint requires POST", Class: ClassPermanentMessage},
	43004: {ErrMsg: "require subscribe", Meaning: "user does not follow the account", Class: ClassPermanentMessage},
	43019: {ErrMsg: "require remove blacklist", Meaning: "user is blacklisted by the account", Class: ClassPermanentMessage},
	43101: {ErrMsg: "user refuse to accept the msg", Meaning: "user refused or consumed the subscription", Class: ClassPermanentMessage},
	44002: {ErrMsg: "empty post data", Meaning: "request body is empty", Class: ClassPermanentMessage},
	45009: {ErrMsg: "reach max api daily quota limit", Meaning: "daily quota of this API is used up", Class: ClassQuota},
	45011: {ErrMsg: "api minute-quota reach limit must slower retry next minute", Meaning: "per-minute frequency limit reached", Class: ClassPace},
	45015: {ErrMsg: "response out of time limit or subscription is canceled", Meaning: "customer message outside the 48 h window", Class: ClassPermanentMessage},
	45047: {ErrMsg: "out of response count limit", Meaning: "customer message count limit reached", Class: ClassPermanentMessage},
	45065: {ErrMsg: "clientmsgid exist", Meaning: "mass send: clientmsgid already used", Class: ClassPermanentMessage},
	45066: {ErrMsg: "same clientmsgid retry too fast", Meaning: "mass send: retried within a minute", Class: ClassPace},
	45067: {ErrMsg: "clientmsgid size out of limit", Meaning: "mass send: clientmsgid too long", Class: ClassPermanentMessage},
	47001: {ErrMsg: "data format error", Meaning: "body is not valid JSON", Class: ClassPermanentMessage},
	47003: {ErrMsg: "argument invalid!", Meaning: "a field violates its type or length rules", Class: ClassPermanentMessage},
	48001: {ErrMsg: "api unauthorized", Meaning: "account lacks permission for this API", Class: ClassPermanentApp},
	48004: {ErrMsg: "api forbidden for irregularities", Meaning: "API banned for this account", Class: ClassPermanentApp},
	48006: {ErrMsg: "forbid to clear quota because of reaching the limit", Meaning: "clear_quota used 10 times this month", Class: ClassPermanentMessage},
	50002: {ErrMsg: "user limited", Meaning: "account restricted after a violation", Class: ClassPermanentApp},
	50004: {ErrMsg: "api forbidden", Meaning: "token API forbidden for this account", Class: ClassPermanentApp},
	50007: {ErrMsg: "account frozen", Meaning: "account frozen", Class: ClassPermanentApp},
	61024: {ErrMsg: "must use component token", Meaning: "third-party platform must use its component token", Class: ClassPermanentApp},
	89501: {ErrMsg: "this IP is waiting for admin confirmation", Meaning: "caller IP awaits admin confirmation", Class: ClassPermanentApp},
	89503: {ErrMsg: "this IP requires admin confirmation", Meaning: "caller IP requires admin confirmation", Class: ClassPermanentApp},
	89506: {ErrMsg: "IP rejected twice by admin in 24 hours, blocked for 24 hours", Meaning: "caller IP blocked for 24 h", Class: ClassPermanentApp},
	89507: {ErrMsg: "IP rejected by admin in 1 hour, blocked for 1 hour", Meaning: "caller IP blocked for 1 h", Class: ClassPermanentApp},
}

// Lookup returns what the taxonomy knows about code. Codes outside the table
// come back with Known false and ClassPermanentMessage, except the 89501-89507
// IP-confirmation family, which is ClassPermanentApp.
func Lookup(code int) CodeInfo {
	if info, ok := codeTable[code]; ok {
		info.Code, info.Known = code, true
		return info
	}
	if code >= 89501 && code <= 89507 {
		return CodeInfo{Code: code, ErrMsg: "ip admin confirmation required", Meaning: "IP admin confirmation family (undocumented member)", Class: ClassPermanentApp}
	}
	return CodeInfo{
		Code:    code,
		ErrMsg:  "unknown error",
		Meaning: "unknown errcode, not in the taxonomy: treated as permanent for the message",
		Class:   ClassPermanentMessage,
	}
}

// Codes returns every errcode in the taxonomy, for tests and documentation.
func Codes() []int {
	codes := make([]int, 0, len(codeTable))
	for c := range codeTable {
		codes = append(codes, c)
	}
	return codes
}

// ClassifyAPI returns the class of errcode code answered by api. The token
// endpoints differ from the rest: there, 40001 means a bad AppSecret (the old
// documented wording), so it stops the app instead of refreshing a token.
func ClassifyAPI(api API, code int) Class {
	if api == APIToken || api == APIStableToken {
		switch code {
		case CodeInvalidCredential, CodeInvalidToken, CodeTokenExpired:
			return ClassPermanentApp
		}
	}
	return Lookup(code).Class
}

// Error is a non-zero errcode answered by WeChat. Callers use errors.As to
// reach it. Its text holds the code, its meaning and WeChat's errmsg, never a
// token or secret.
type Error struct {
	API  API    // the endpoint that answered; may be empty
	Code int    // the errcode
	Msg  string // WeChat's errmsg, verbatim
}

// Error implements error.
func (e *Error) Error() string {
	api := e.API
	if api == "" {
		api = "api"
	}
	return fmt.Sprintf("wechat %s: errcode %d (%s): %s", api, e.Code, Lookup(e.Code).Meaning, e.Msg)
}

// Class returns how a caller reacts to this error.
func (e *Error) Class() Class { return ClassifyAPI(e.API, e.Code) }

// CallKind says what went wrong in a call that got no errcode.
type CallKind string

// The kinds of CallError.
const (
	CallTransport  CallKind = "transport"   // connection refused, reset, DNS...
	CallTimeout    CallKind = "timeout"     // deadline or client timeout
	CallHTTPStatus CallKind = "http_status" // a status other than 200
	CallMalformed  CallKind = "malformed"   // 200 with a body that is not the expected JSON
)

// CallError is a failed call that produced no errcode. Its text never holds
// the request URL (which carries access_token or secret).
type CallError struct {
	API        API
	Kind       CallKind
	StatusCode int   // for CallHTTPStatus
	Err        error // the cause, already stripped of the URL
}

// Error implements error.
func (e *CallError) Error() string {
	switch e.Kind {
	case CallHTTPStatus:
		return fmt.Sprintf("wechat %s: unexpected HTTP status %d", e.API, e.StatusCode)
	default:
		if e.Err == nil {
			return fmt.Sprintf("wechat %s: %s error", e.API, e.Kind)
		}
		return fmt.Sprintf("wechat %s: %s error: %v", e.API, e.Kind, e.Err)
	}
}

// Unwrap returns the cause.
func (e *CallError) Unwrap() error { return e.Err }

// Class returns how a caller reacts to this failure: every call failure is
// transient (the same client_msg_id makes a resend safe), except HTTP
// statuses that no retry can change.
func (e *CallError) Class() Class {
	if e.Kind == CallHTTPStatus {
		switch {
		case e.StatusCode >= 500, e.StatusCode == 408, e.StatusCode == 429:
			return ClassRetry
		case e.StatusCode == 401 || e.StatusCode == 403 || e.StatusCode == 404:
			// A gateway or a wrong base URL: nothing this app sends can pass.
			return ClassPermanentApp
		}
	}
	return ClassRetry
}

// Classify returns how a caller reacts to err, the result of a call made
// through this package: nil is ClassOK, *Error and *CallError answer for
// themselves, and any other error (a cancelled context included: the work
// was not done and may be done later) is ClassRetry.
func Classify(err error) Class {
	if err == nil {
		return ClassOK
	}
	var we *Error
	if errors.As(err, &we) {
		return we.Class()
	}
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Class()
	}
	return ClassRetry
}

// Retryable reports whether err is transient: retry it with backoff.
func Retryable(err error) bool { return Classify(err) == ClassRetry }

// TokenInvalid reports whether err says the access_token must be refreshed.
func TokenInvalid(err error) bool { return Classify(err) == ClassTokenInvalid }

// RateLimited reports whether err is the per-minute limit (45011): pace.
func RateLimited(err error) bool { return Classify(err) == ClassPace }

// QuotaExceeded reports whether err is an exhausted daily quota (45009).
func QuotaExceeded(err error) bool { return Classify(err) == ClassQuota }

// PermanentForMessage reports whether err fails this message for good.
func PermanentForMessage(err error) bool { return Classify(err) == ClassPermanentMessage }

// PermanentForApp reports whether err stops the whole app until an operator acts.
func PermanentForApp(err error) bool { return Classify(err) == ClassPermanentApp }

// Code returns the errcode in err, or 0 when err carries none.
func Code(err error) int {
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// Ambiguous reports whether a failed send may nevertheless have been
// processed by WeChat, so that a resend could reach the user twice once
// WeChat's client_msg_id dedup window is over: no answer at all
// (transport error, timeout, connection reset), an HTTP 5xx (a gateway may
// answer it after WeChat did the work), a 200 whose body is empty or not
// the expected JSON, and any other error this package did not classify.
// An errcode answer (*Error, even -1) is WeChat saying it did not send the
// message, and a 4xx status is a refusal before the request was
// processed: neither is ambiguous. nil (success) is not ambiguous either.
func Ambiguous(err error) bool {
	if err == nil {
		return false
	}
	var we *Error
	if errors.As(err, &we) {
		return false
	}
	var ce *CallError
	if errors.As(err, &ce) && ce.Kind == CallHTTPStatus {
		return ce.StatusCode >= 500
	}
	return true
}
