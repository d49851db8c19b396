package wechat

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTaxonomyClasses(t *testing.T) {
	// The errcode policy of design.md §3, code by code.
	tests := []struct {
		class Class
		codes []int
	}{
		{ClassOK, []int{0}},
		{ClassRetry, []int{-1}},
		{ClassTokenInvalid, []int{40001, 40014, 42001}},
		{ClassPace, []int{45011}},
		{ClassQuota, []int{45009}},
		{ClassPermanentMessage, []int{40003, 40036, 40037, 40165, 43004, 43019, 47001, 47003, 40033, 43101, 44002, 41001}},
		{ClassPermanentApp, []int{40013, 40125, 40164, 48001, 89501, 89503, 89506, 89507, 40002, 41002, 41004, 40243, 48004, 50002}},
	}
	for _, tt := range tests {
		t.Run(tt.class.String(), func(t *testing.T) {
			for _, code := range tt.codes {
				info := Lookup(code)
				assert.True(t, info.Known, "Lookup(%d).Known", code)
				assert.Equal(t, tt.class, info.Class, "Lookup(%d).Class", code)
				assert.Equal(t, tt.class, ClassifyAPI(APITemplateSend, code), "ClassifyAPI(template_send, %d)", code)
				if code != 0 {
					err := fmt.Errorf("send: %w", &Error{API: APITemplateSend, Code: code, Msg: info.ErrMsg})
					assert.Equal(t, tt.class, Classify(err), "Classify(wrapped %d)", code)
				}
			}
		})
	}
}

func TestTaxonomyTableIsComplete(t *testing.T) {
	codes := Codes()
	require.GreaterOrEqual(t, len(codes), 45, "the table should hold every code of the reference")
	for _, code := range codes {
		info := Lookup(code)
		assert.NotEmpty(t, info.ErrMsg, "errmsg of %d", code)
		assert.NotEmpty(t, info.Meaning, "meaning of %d", code)
		assert.NotContains(t, info.Class.String(), "class(", "class of %d", code)
		assert.Equal(t, code, info.Code)
	}
}

func TestUnknownCodesAreConservative(t *testing.T) {
	for _, code := range []int{12345, 99999, -2, 40000} {
		info := Lookup(code)
		assert.False(t, info.Known, "Lookup(%d).Known", code)
		assert.Equal(t, ClassPermanentMessage, info.Class, "unknown %d must not be retried blindly nor stop the app", code)
		assert.Contains(t, info.Meaning, "unknown errcode", "Lookup(%d) says it is unknown", code)
	}
	// An undocumented member of the IP-confirmation family stops the app.
	info := Lookup(89504)
	assert.False(t, info.Known)
	assert.Equal(t, ClassPermanentApp, info.Class)
}

func TestTokenEndpointCredentialCodesStopTheApp(t *testing.T) {
	for _, api := range []API{APIToken, APIStableToken} {
		for _, code := range []int{40001, 40014, 42001} {
			assert.Equal(t, ClassPermanentApp, ClassifyAPI(api, code), "ClassifyAPI(%s, %d)", api, code)
		}
		assert.Equal(t, ClassQuota, ClassifyAPI(api, 45009), "token API quota")
		assert.Equal(t, ClassRetry, ClassifyAPI(api, -1))
	}
}

func TestCallErrorClasses(t *testing.T) {
	tests := []struct {
		err  *CallError
		want Class
	}{
		{&CallError{Kind: CallTransport, Err: errors.New("connection reset by peer")}, ClassRetry},
		{&CallError{Kind: CallTimeout}, ClassRetry},
		{&CallError{Kind: CallMalformed}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 500}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 502}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 503}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 429}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 408}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 400}, ClassRetry},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 404}, ClassPermanentApp},
		{&CallError{Kind: CallHTTPStatus, StatusCode: 403}, ClassPermanentApp},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			assert.Equal(t, tt.want, Classify(fmt.Errorf("wrapped: %w", tt.err)))
		})
	}
	assert.Equal(t, ClassOK, Classify(nil))
	assert.Equal(t, ClassRetry, Classify(errors.New("anything else")))
}

func TestHelpers(t *testing.T) {
	e := func(code int) error { return &Error{API: APITemplateSend, Code: code} }
	assert.True(t, Retryable(e(-1)))
	assert.True(t, Retryable(&CallError{Kind: CallTimeout}))
	assert.False(t, Retryable(e(40003)))
	assert.True(t, TokenInvalid(e(42001)))
	assert.False(t, TokenInvalid(e(-1)))
	assert.True(t, RateLimited(e(45011)))
	assert.True(t, QuotaExceeded(e(45009)))
	assert.True(t, PermanentForMessage(e(47003)))
	assert.True(t, PermanentForApp(e(48001)))
	assert.False(t, PermanentForApp(nil))
	assert.Equal(t, 40037, Code(fmt.Errorf("x: %w", e(40037))))
	assert.Equal(t, 0, Code(errors.New("no code")))
}

func TestErrorText(t *testing.T) {
	err := &Error{API: APITemplateSend, Code: 43004, Msg: "require subscribe rid: 6337c0e2-19cada87-15edcde8"}
	assert.Equal(t, "wechat template_send: errcode 43004 (user does not follow the account): require subscribe rid: 6337c0e2-19cada87-15edcde8", err.Error())
	var we *Error
	require.True(t, errors.As(fmt.Errorf("ctx: %w", err), &we))
	assert.Equal(t, 43004, we.Code)
	assert.Equal(t, "wechat api: errcode -1 (WeChat is busy; retry later): system error", (&Error{Code: -1, Msg: "system error"}).Error())
}

func TestResponseErr(t *testing.T) {
	assert.NoError(t, Response{ErrCode: 0, ErrMsg: "ok"}.Err(APITemplateSend))
	err := Response{ErrCode: 45009, ErrMsg: "reach max api daily quota limit"}.Err(APITemplateSend)
	assert.True(t, QuotaExceeded(err))
}

func TestClassString(t *testing.T) {
	assert.Equal(t, "permanent_app", ClassPermanentApp.String())
	assert.Equal(t, "class(42)", Class(42).String())
}

// TestAmbiguous: only an outcome that leaves open whether WeChat processed
// the send is ambiguous; an errcode answer (whatever its class, -1
// included) or a 4xx refusal is definitive.
func TestAmbiguous(t *testing.T) {
	code := func(c int) error {
		return fmt.Errorf("send: %w", &Error{API: APITemplateSend, Code: c, Msg: Lookup(c).ErrMsg})
	}
	status := func(s int) error { return &CallError{API: APITemplateSend, Kind: CallHTTPStatus, StatusCode: s} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"success", nil, false},
		{"errcode -1 with a JSON body", code(-1), false},
		{"45009 daily quota", code(45009), false},
		{"45011 minute limit", code(45011), false},
		{"40001 stale token", code(40001), false},
		{"42001 expired token", code(42001), false},
		{"43004 not following", code(43004), false},
		{"40164 IP whitelist", code(40164), false},
		{"HTTP 404", status(404), false},
		{"HTTP 429", status(429), false},
		{"HTTP 500", status(500), true},
		{"HTTP 502", status(502), true},
		{"HTTP 504", status(504), true},
		{"connection reset", &CallError{API: APITemplateSend, Kind: CallTransport, Err: errors.New("connection reset by peer")}, true},
		{"timeout", fmt.Errorf("send: %w", &CallError{API: APITemplateSend, Kind: CallTimeout, Err: errors.New("deadline exceeded")}), true},
		{"malformed body", &CallError{API: APITemplateSend, Kind: CallMalformed, Err: errors.New("invalid JSON at byte 3")}, true},
		{"empty body", &CallError{API: APITemplateSend, Kind: CallMalformed, Err: errors.New("empty response body")}, true},
		{"unclassified error", errors.New("something else"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Ambiguous(tt.err), "Ambiguous(%v)", tt.err)
		})
	}
}
