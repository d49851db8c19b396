package wxpushd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/token"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigFromEnv(t *testing.T) {
	env := map[string]string{
		EnvAddr: "127.0.0.1:9999", EnvRedisURL: "redis://127.0.0.1:6379/2", EnvWeChatBaseURL: "http://127.0.0.1:9000",
		EnvAPIKeys: " key-one-0123456789abcdef , key-two-0123456789abcdef ", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "s3cret",
		EnvCallbackToken: "cbtok", EnvEncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		"WXPUSH_TOKEN_MODE": "classic", "WXPUSH_WORKERS": "4", "WXPUSH_BACKOFF_CAP": "30s", "WXPUSH_VISIBILITY_TIMEOUT": "2m",
	}
	cfg, err := LoadConfig(nil, envOf(env), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9999", cfg.Addr)
	assert.Equal(t, "redis://127.0.0.1:6379/2", cfg.RedisURL)
	assert.Equal(t, []wechat.Secret{"key-one-0123456789abcdef", "key-two-0123456789abcdef"}, cfg.APIKeys)
	require.Len(t, cfg.Apps, 1)
	assert.Equal(t, AppConfig{Name: "default", AppID: "wx0123456789abcdef", Secret: "s3cret", CallbackToken: "cbtok",
		EncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}, cfg.Apps[0])
	assert.Equal(t, token.ModeClassic, cfg.TokenMode)
	assert.Equal(t, 4, cfg.Workers)
	assert.Equal(t, 30*time.Second, cfg.BackoffCap)
	assert.Equal(t, 2*time.Minute, cfg.Visibility)
	assert.Equal(t, 24*time.Hour, cfg.IdempotencyTTL, "defaults stay")
	assert.Equal(t, 5*time.Minute, cfg.CallbackMaxSkew, "defaults stay")

	// Flags win over the environment.
	cfg, err = LoadConfig([]string{"-addr", ":7000", "-workers", "9", "-no-workers"}, envOf(env), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, ":7000", cfg.Addr)
	assert.Equal(t, 9, cfg.Workers)
	assert.True(t, cfg.NoWorkers)
}

func TestLoadConfigAppsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
apps:
  - name: shop
    appid: wx0123456789abcdef
    secret: shop-secret
  - name: news
    appid: wxfedcba9876543210
    secret: news-secret
    callback_token: t
    encoding_aes_key: abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
`), 0o600))
	cfg, err := LoadConfig([]string{"-config", path, "-api-keys", "a-long-enough-api-key-01"}, envOf(nil), &bytes.Buffer{})
	require.NoError(t, err)
	require.Len(t, cfg.Apps, 2)
	assert.Equal(t, "shop", cfg.Apps[0].Name)
	assert.Equal(t, wechat.Secret("news-secret"), cfg.Apps[1].Secret)
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	app := map[string]string{EnvAppID: "wx0123456789abcdef", EnvAppSecret: "app-secret-value"}
	withKeys := map[string]string{EnvAPIKeys: "a-long-enough-api-key-01", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "app-secret-value"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no keys", nil, app, "WXPUSH_API_KEYS"},
		{"short key", []string{"-api-keys", "short"}, app, "shorter than 16"},
		{"no apps", []string{"-api-keys", "a-long-enough-api-key-01"}, nil, "no apps"},
		{"bad token mode", []string{"-token-mode", "fast"}, withKeys, "token mode"},
		{"bad base URL", []string{"-wechat-base-url", "ftp://x"}, withKeys, "base URL"},
		{"unknown flag", []string{"-nope"}, withKeys, "usage"},
		{"stray argument", []string{"extra"}, withKeys, "unexpected arguments"},
		{"unknown key in apps file", []string{"-config", write("a.yaml", "apps:\n  - name: x\n    appid: wx1\n    secret: s\n    colour: red\n")}, withKeys, "colour"},
		{"bad app name", []string{"-config", write("b.yaml", "apps:\n  - name: Bad Name\n    appid: wx1\n    secret: s\n")}, withKeys, "apps[0].name"},
		{"duplicate app", []string{"-config", write("c.yaml", "apps:\n  - {name: a, appid: wx1, secret: s}\n  - {name: a, appid: wx2, secret: s}\n")}, withKeys, "configured twice"},
		{"missing secret", []string{"-config", write("d.yaml", "apps:\n  - {name: a, appid: wx1}\n")}, withKeys, "apps[0].secret: required"},
		{"bad AES key", []string{"-config", write("e.yaml", "apps:\n  - {name: a, appid: wx1, secret: s, encoding_aes_key: short}\n")}, withKeys, "encoding_aes_key"},
		{"AES key without callback token", []string{"-config", write("f.yaml", "apps:\n  - {name: a, appid: wx1, secret: s, encoding_aes_key: bW9ja3d4LWRlbW8tZW5jb2RpbmctYWVzLWtleS0wMDE}\n")}, withKeys, "apps[0].encoding_aes_key: needs a callback_token"},
		{"previous AES key alone", []string{"-config", write("g.yaml", "apps:\n  - {name: a, appid: wx1, secret: s, callback_token: t, previous_encoding_aes_key: bW9ja3d4LWRlbW8tZW5jb2RpbmctYWVzLWtleS0wMDE}\n")}, withKeys, "apps[0].previous_encoding_aes_key: needs an encoding_aes_key"},
		{"missing apps file", []string{"-config", filepath.Join(dir, "none.yaml")}, withKeys, "apps file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(tt.args, envOf(tt.env), &bytes.Buffer{})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrUsage)
			assert.Contains(t, err.Error(), tt.want)
			assert.False(t, strings.Contains(err.Error(), "app-secret-value"), "no secret in errors")
		})
	}
}

func TestRedisClientURLs(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://user:pass@example.com:6380/1", "redis://127.0.0.1:26379?master_name=mymaster", "cluster+redis://127.0.0.1:7000?addr=127.0.0.1:7001"} {
		c, err := redisClient(u)
		require.NoError(t, err, u)
		_ = c.Close()
	}
	_, err := redisClient("http://nope")
	assert.Error(t, err)
}
