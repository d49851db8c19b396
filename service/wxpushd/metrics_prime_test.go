package wxpushd

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestMetricsPrimedAtStart: before any message, /metrics already lists
// each app's series at zero, so increase() sees the first failure and a
// pause alert sees 0 rather than nothing; delivery report series exist
// only for apps that take callbacks.
func TestMetricsPrimedAtStart(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	cfg.Apps = append(cfg.Apps, AppConfig{
		Name: "shop", AppID: "wx0123456789abcdef", Secret: "shop-secret-0123456789",
		CallbackToken: "shoptoken", EncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
	})
	in := startInstance(t, cfg)
	code, body, _ := api{t: t, base: in.URL(), key: testAPIKey}.do(http.MethodGet, "/metrics", nil, nil)
	require.Equal(t, http.StatusOK, code)
	text := string(body)

	for _, tc := range []struct {
		line    string
		present bool
	}{
		{`wxpush_messages_accepted_total{app="default"} 0`, true},
		{`wxpush_messages_sent_total{app="shop"} 0`, true},
		{`wxpush_messages_failed_total{app="default",reason="attempts_exhausted"} 0`, true},
		{`wxpush_messages_failed_total{app="shop",reason="permanent_errcode"} 0`, true},
		{`wxpush_app_paused{app="default",reason="app_error"} 0`, true},
		{`wxpush_app_paused{app="shop",reason="daily_quota"} 0`, true},
		{`wxpush_token_refreshes_total{app="default",result="error"} 0`, true},
		{`wxpush_token_daily_budget{app="shop"} 10000`, true},
		{`wxpush_callbacks_total{app="shop",result="forbidden"} 0`, true},
		{`wxpush_callbacks_total{app="default",result="replayed"} 0`, true},
		{`wxpush_accept_to_sent_seconds_count{app="default"} 0`, true},
		{`wxpush_send_duration_seconds_count{app="shop"} 0`, true},
		// shop takes callbacks, default does not: only shop expects reports.
		{`wxpush_delivery_reports_total{app="shop",outcome="delivered"} 0`, true},
		{`wxpush_delivery_reports_total{app="default",outcome="delivered"}`, false},
	} {
		if tc.present {
			assert.Contains(t, text, tc.line+"\n", "primed at start")
		} else {
			assert.NotContains(t, text, tc.line, "not primed")
		}
	}
}
