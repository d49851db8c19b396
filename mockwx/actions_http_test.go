package mockwx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// TestAddFaultUnknownActionType: POST /_mock/faults with an unregistered
// action type is a 400 naming the field and the registered types.
func TestAddFaultUnknownActionType(t *testing.T) {
	e := newEnv(t, mockwx.Config{})
	for _, tc := range []struct{ name, body, field, msg string }{
		{"unknown type", `{"endpoint":"token","action":{"type":"drop_table"}}`, "action.type",
			`action.type: unknown action type "drop_table"; must be one of delivery_status, errcode, fault, http_status, latency`},
		{"missing type", `{"endpoint":"token","action":{"errcode":1}}`, "action.type",
			"action.type: is required; must be one of delivery_status, errcode, fault, http_status, latency"},
		{"unknown attribute", `{"endpoint":"token","action":{"type":"fault","fault":"reset","errcode":1}}`, "action.errcode",
			"action.errcode: unknown attribute (action type fault has fault)"},
		{"refused endpoint", `{"endpoint":"event","action":{"type":"errcode","errcode":1}}`, "action.errcode",
			"action.errcode: not available on endpoint event, a push to the app (give a fault or a latency)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.post(t, "/_mock/faults", []byte(tc.body))
			require.Equal(t, http.StatusBadRequest, status, "POST %s: %s", tc.body, body)
			var ae mockwx.AdminError
			require.NoError(t, json.Unmarshal(body, &ae), "%s", body)
			assert.Equal(t, mockwx.AdminErrorBody{Code: "invalid_rule", Message: tc.msg, Field: tc.field}, ae.Error, "POST %s", tc.body)
		})
	}
	rules, err := e.Admin.Faults(t.Context())
	require.NoError(t, err)
	assert.Empty(t, rules, "a refused rule is not added")
}

// TestTypedActionsOverHTTP: each typed rule does to a template send what
// its flat twin does, and the Go client adds and lists typed rules.
func TestTypedActionsOverHTTP(t *testing.T) {
	outcome := func(t *testing.T, rule string) string {
		e := newEnv(t, mockwx.Config{})
		tok := e.token(t)
		addRule(t, e, rule)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := e.wc.SendTemplate(ctx, tok, validOrder("oUser-typed-000001"))
		var ce *wechat.CallError
		kind := ""
		if errors.As(err, &ce) {
			kind = string(ce.Kind)
		}
		st, serr := e.Admin.Stats(t.Context())
		require.NoError(t, serr)
		return fmt.Sprintf("code=%d kind=%s delivered=%d fired=%d injected=%v", codeOf(err), kind, st.Delivered, st.FaultsFired, st.Injected)
	}
	for _, tc := range []struct{ name, flat, typed string }{
		{"errcode", `{"endpoint":"template_send","errcode":45009}`, `{"endpoint":"template_send","action":{"type":"errcode","errcode":45009}}`},
		{"http_status", `{"endpoint":"template_send","http_status":502}`, `{"endpoint":"template_send","action":{"type":"http_status","http_status":502}}`},
		{"fault reset", `{"endpoint":"template_send","fault":"reset"}`, `{"endpoint":"template_send","action":{"type":"fault","fault":"reset"}}`},
		{"fault malformed", `{"endpoint":"template_send","fault":"malformed"}`, `{"endpoint":"template_send","action":{"type":"fault","fault":"malformed"}}`},
		{"latency", `{"endpoint":"template_send","latency":{"fixed_ms":1}}`, `{"endpoint":"template_send","action":{"type":"latency","fixed_ms":1}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flat, typed := outcome(t, tc.flat), outcome(t, tc.typed)
			assert.Equal(t, flat, typed, "typed %s against flat %s", tc.typed, tc.flat)
		})
	}

	e := newEnv(t, mockwx.Config{})
	r := mockwx.Rule{Endpoint: mockwx.EndpointToken, Action: &mockwx.RuleAction{Kind: &mockwx.HTTPStatusAction{HTTPStatus: 503}}, Times: 1}
	id, err := e.Admin.AddFault(t.Context(), r)
	require.NoError(t, err)
	rules, err := e.Admin.Faults(t.Context())
	require.NoError(t, err)
	require.Len(t, rules, 1)
	assert.Equal(t, id, rules[0].ID)
	assert.Equal(t, r, rules[0].Rule, "the client reads back the typed rule it added")
	_, err = e.wc.Token(t.Context(), e.App.AppID, e.secret())
	var ce *wechat.CallError
	require.True(t, errors.As(err, &ce), "%T %v", err, err)
	assert.Equal(t, wechat.CallHTTPStatus, ce.Kind)
}
