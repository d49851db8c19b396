package harness_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// TestServiceEnv: a Config turned into variables and an apps file is read
// back by wxpushd's own LoadConfig as the same Config, and no secret is in
// the apps file.
func TestServiceEnv(t *testing.T) {
	const key = "harness-test-key-0123456789abcdef"
	base := wxpushd.Config{
		Addr: ":8080", RedisURL: "redis://redis:6379/0", WeChatBaseURL: "http://mockwx:9000",
		APIKeys: []wechat.Secret{key}, TokenMode: "classic", Workers: 3, MaxAttempts: 7,
		BackoffBase: 20 * time.Millisecond, BackoffCap: 200 * time.Millisecond, SendTimeout: time.Second,
		Visibility: 5 * time.Second, ShutdownTimeout: 3 * time.Second, PaceDelay: 300 * time.Millisecond,
		QuotaDelay: -time.Second, AppDelay: 400 * time.Millisecond, DedupWindow: 3 * time.Second,
		WebhookTimeout: 2 * time.Second, WebhookBackoffBase: 50 * time.Millisecond, WebhookBackoffCap: 500 * time.Millisecond,
		StoreCheckInterval: 200 * time.Millisecond, ReadTimeout: 2 * time.Second, WriteTimeout: 4 * time.Second,
		RateLimitPerKey: 12.5, RateBurstPerKey: 3, RateLimitGlobal: 99, RateBurstGlobal: 9, TokenDailyBudget: 500,
		IdempotencyTTL: time.Hour, Retention: 48 * time.Hour, WebhookMaxAttempts: 4, CallbackMaxSkew: time.Minute,
		IdleTimeout: 9 * time.Second, MaxConns: 77, Partitions: 6, RedisWaitReplicas: 1, RedisWaitTimeout: 2 * time.Second, Instance: "conformance-1", LogLevel: "warn", NoConsole: true, NoFollowerCheck: true,
	}
	callbackApp := wxpushd.AppConfig{
		Name: "default", AppID: "wx0000000000000001", Secret: "s3cret-app-secret-000000000000001",
		CallbackToken: "tok3n-callback", EncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		CallbackMode: wechat.ModeSafe, RateLimit: 40, RateBurst: 2,
		EventWebhookURL: "http://172.17.0.1:4000/event-webhook?a=$x", EventWebhookSecret: "event-webhook-secret-0001",
		PreviousEncodingAESKey: "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg", QuotaReset: "08:00 UTC", TokenMode: "stable",
		StatusWebhookURL: "http://172.17.0.1:4000/status", StatusWebhookSecret: "status-webhook-secret-001",
	}
	require.NoError(t, json.Unmarshal([]byte(`[{"on":"subscribe","text":"welcome ${NOT_EXPANDED}"},{"keyword":"help","match":"prefix","text":"help"}]`), &callbackApp.Replies))
	second := wxpushd.AppConfig{Name: "other", AppID: "wx0000000000000002", Secret: "another-secret-0000000000000002"}
	tests := []struct {
		name string
		apps []wxpushd.AppConfig
	}{
		{"no apps", nil},
		{"one app with callbacks, replies, limits and a webhook", []wxpushd.AppConfig{callbackApp}},
		{"two apps", []wxpushd.AppConfig{callbackApp, second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Apps = tt.apps
			path := filepath.Join(t.TempDir(), "apps.yaml")
			env, file, err := harness.ServiceEnv(cfg, path)
			require.NoError(t, err)
			if tt.apps == nil {
				assert.Nil(t, file)
				_, ok := env[wxpushd.EnvConfig]
				assert.False(t, ok)
				return
			}
			require.NoError(t, os.WriteFile(path, file, 0o600))
			for _, a := range tt.apps {
				for _, s := range []wechat.Secret{a.Secret, a.CallbackToken, a.EncodingAESKey, a.PreviousEncodingAESKey, a.EventWebhookSecret, a.StatusWebhookSecret} {
					if s != "" {
						assert.NotContains(t, string(file), s.Reveal(), "a secret in the apps file")
					}
				}
			}
			got, err := wxpushd.LoadConfig(nil, func(k string) string { return env[k] }, io.Discard)
			require.NoError(t, err)
			assert.Equal(t, cfg, got)
		})
	}
}

// TestServiceEnvRefuses: settings wxpushd does not read from its
// environment are refused, not dropped.
func TestServiceEnvRefuses(t *testing.T) {
	for name, cfg := range map[string]wxpushd.Config{
		"key prefix": {KeyPrefix: "x:{x}:"},
		"no auth":    {InsecureNoAuth: true},
		"no workers": {NoWorkers: true},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := harness.ServiceEnv(cfg, "/etc/apps.yaml")
			require.Error(t, err)
			assert.True(t, strings.Contains(err.Error(), "no environment variable"), err.Error())
		})
	}
}
