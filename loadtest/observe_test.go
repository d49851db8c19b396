package loadtest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
)

// TestDescribeRule: a rule's action is described whether the rule was
// written in the flat form or the typed one.
func TestDescribeRule(t *testing.T) {
	for src, want := range map[string]string{
		`{"endpoint":"template_send","errcode":45009}`:                                   "template_send errcode 45009",
		`{"endpoint":"template_send","action":{"type":"errcode","errcode":45009}}`:       "template_send errcode 45009",
		`{"endpoint":"*","fault":"reset"}`:                                               "* reset",
		`{"endpoint":"*","action":{"type":"fault","fault":"reset"}}`:                     "* reset",
		`{"endpoint":"template_send","action":{"type":"http_status","http_status":502}}`: "template_send HTTP 502",
		`{"endpoint":"callback","delivery_status":"failed:user block"}`:                  "callback delivery failed:user block",
	} {
		var r mockwx.Rule
		require.NoError(t, json.Unmarshal([]byte(src), &r), src)
		assert.Equal(t, want, describeRule(r), src)
	}
}
