package wxpushd

import (
	"bytes"
	"flag"
	"maps"
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

// withEnv returns a copy of m with k set to v.
func withEnv(m map[string]string, k, v string) map[string]string {
	out := maps.Clone(m)
	out[k] = v
	return out
}

func TestLoadConfigFromEnv(t *testing.T) {
	env := map[string]string{
		EnvAddr: "127.0.0.1:9999", EnvRedisURL: "redis://127.0.0.1:6379/2", EnvWeChatBaseURL: "http://127.0.0.1:9000",
		EnvAPIKeys: " key-one-0123456789abcdef , key-two-0123456789abcdef ", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "s3cret",
		EnvCallbackToken: "cbtok", EnvEncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		"WXPUSH_TOKEN_MODE": "classic", "WXPUSH_WORKERS": "4", "WXPUSH_BACKOFF_CAP": "30s", "WXPUSH_VISIBILITY_TIMEOUT": "2m",
		"WXPUSH_STORE_CHECK_INTERVAL": "750ms",
		"WXPUSH_DEDUP_WINDOW":         "5m",
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
	assert.Equal(t, 750*time.Millisecond, cfg.StoreCheckInterval)
	assert.Equal(t, 5*time.Minute, cfg.DedupWindow)
	assert.Equal(t, 24*time.Hour, cfg.IdempotencyTTL, "defaults stay")
	assert.Equal(t, 5*time.Minute, cfg.CallbackMaxSkew, "defaults stay")

	// Flags win over the environment.
	cfg, err = LoadConfig([]string{"-addr", ":7000", "-workers", "9", "-no-workers", "-dedup-window", "3s", "-send-timeout", "1s"}, envOf(env), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, cfg.DedupWindow)
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
		{"key with a space", []string{"-api-keys", "a-long-enough api-key-01"}, app, "API key 1 holds a space"},
		{"key with a non-ASCII character", []string{"-api-keys", "ok-key-0123456789abcdef,a-long-enough-api-key-é"}, app, "API key 2 holds"},
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
		{"negative store check interval", []string{"-store-check-interval", "-1s"}, withKeys, "store-check-interval"},
		{"dedup window within its margin", []string{"-dedup-window", "11s"}, withKeys, "dedup-window 11s: must be longer than its safety margin 11.1s"},
		{"negative dedup window", []string{"-dedup-window", "-1m"}, withKeys, "dedup-window -1m0s: must not be negative"},
		{"missing apps file", []string{"-config", filepath.Join(dir, "none.yaml")}, withKeys, "apps file"},
		{"write timeout shorter than read timeout", []string{"-read-timeout", "20s", "-write-timeout", "10s"}, withKeys, "write-timeout 10s is shorter than read-timeout 20s"},
		{"negative max conns", []string{"-max-conns", "-1"}, withKeys, "max-conns must not be negative"},
		{"negative rate limit", []string{"-rate-limit-per-key", "-2"}, withKeys, "rate-limit-per-key: must be > 0"},
		{"infinite global rate", []string{"-rate-limit-global", "+Inf"}, withKeys, "rate-limit-global: must be > 0"},
		{"negative burst", []string{"-rate-limit-global", "5", "-rate-burst-global", "-1"}, withKeys, "rate-limit-global burst"},
		{"redis URL without a scheme", []string{"-redis-url", "127.0.0.1:6379"}, withKeys, "no scheme: use redis://host:6379/0 (here redis://127.0.0.1:6379/0)"},
		{"redis URL with another scheme", []string{"-redis-url", "http://127.0.0.1:6379"}, withKeys, `unknown scheme "http"`},
		{"bad log level", []string{"-log-level", "loud"}, withKeys, "want debug, info, warn or error"},
		{"bad integer variable", nil, withEnv(withKeys, "WXPUSH_MAX_ATTEMPTS", "eight"), `WXPUSH_MAX_ATTEMPTS "eight": want an integer`},
		{"bad duration variable", nil, withEnv(withKeys, "WXPUSH_BACKOFF_CAP", "300"), `WXPUSH_BACKOFF_CAP "300": want a duration`},
		{"bad number variable", nil, withEnv(withKeys, "WXPUSH_RATE_LIMIT_GLOBAL", "lots"), `WXPUSH_RATE_LIMIT_GLOBAL "lots": want a number`},
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

// TestLoadConfigBadVariableOverridden: a variable whose value does not
// parse is an error only when its flag does not override it; -h works
// whatever the variables hold.
func TestLoadConfigBadVariableOverridden(t *testing.T) {
	env := map[string]string{EnvAPIKeys: "a-long-enough-api-key-01", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "s",
		"WXPUSH_WORKERS": "many", EnvConsole: "maybe"}
	cfg, err := LoadConfig([]string{"-workers", "3", "-console=false"}, envOf(env), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 3, cfg.Workers)
	assert.True(t, cfg.NoConsole)

	_, err = LoadConfig(nil, envOf(env), &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WXPUSH_WORKERS")
	assert.Contains(t, err.Error(), EnvConsole, "every bad variable is named")

	var help bytes.Buffer
	_, err = LoadConfig([]string{"-h"}, envOf(env), &help)
	require.ErrorIs(t, err, flag.ErrHelp)
	assert.Contains(t, help.String(), "WXPUSH_WORKERS")
}

// TestLoadConfigHTTPBounds: the server bounds and inbound rate limits come
// from flags and WXPUSH_* variables, with defaults, and all appear in -h.
func TestLoadConfigHTTPBounds(t *testing.T) {
	env := map[string]string{
		EnvAPIKeys: "a-long-enough-api-key-01", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "app-secret-value",
		"WXPUSH_READ_TIMEOUT": "5s", "WXPUSH_MAX_CONNS": "300", "WXPUSH_RATE_LIMIT_PER_KEY": "12.5", "WXPUSH_RATE_BURST_PER_KEY": "20",
	}
	cfg, err := LoadConfig([]string{"-rate-limit-global", "500", "-rate-burst-global", "100", "-idle-timeout", "30s"}, envOf(env), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, cfg.ReadTimeout)
	assert.Equal(t, DefaultWriteTimeout, cfg.WriteTimeout, "default")
	assert.Equal(t, 30*time.Second, cfg.IdleTimeout)
	assert.Equal(t, 300, cfg.MaxConns)
	assert.Equal(t, 12.5, cfg.RateLimitPerKey)
	assert.Equal(t, 20, cfg.RateBurstPerKey)
	assert.Equal(t, 500.0, cfg.RateLimitGlobal)
	assert.Equal(t, 100, cfg.RateBurstGlobal)

	cfg, err = LoadConfig(nil, envOf(map[string]string{EnvAPIKeys: "a-long-enough-api-key-01", EnvAppID: "wx1", EnvAppSecret: "s"}), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, DefaultReadTimeout, cfg.ReadTimeout)
	assert.Equal(t, DefaultMaxConns, cfg.MaxConns)
	assert.Zero(t, cfg.RateLimitPerKey, "no inbound limit by default")
	assert.Zero(t, cfg.RateLimitGlobal)

	var help bytes.Buffer
	_, err = LoadConfig([]string{"-h"}, envOf(nil), &help)
	require.Error(t, err)
	for _, name := range []string{"read-timeout", "write-timeout", "idle-timeout", "max-conns", "rate-limit-per-key", "rate-burst-per-key", "rate-limit-global", "rate-burst-global"} {
		assert.Contains(t, help.String(), "-"+name, "-h lists -%s", name)
		assert.Contains(t, help.String(), "WXPUSH_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")), "-h names the variable of -%s", name)
	}
}

func TestRedisClientURLs(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://user:pass@example.com:6380/1", "redis://127.0.0.1:26379?master_name=mymaster", "cluster+redis://127.0.0.1:7000?addr=127.0.0.1:7001"} {
		c, err := redisClient(u, nil)
		require.NoError(t, err, u)
		_ = c.Close()
	}
	_, err := redisClient("http://nope", nil)
	assert.Error(t, err)
}

func TestLoadConfigPerAppSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
apps:
  - name: shop
    appid: wx0123456789abcdef
    secret: ${SHOP_SECRET}
    callback_token: tok$$en-${SHOP_CB}
    rate_limit: 20
    rate_burst: 5
    quota_reset: "04:00"
    token_mode: classic
    status_webhook_url: https://hooks.example.com/wx?k=$x
    status_webhook_secret: ${SHOP_HOOK_SECRET}
  - name: news
    appid: wxfedcba9876543210
    secret: news-secret
`), 0o600))
	env := envOf(map[string]string{"SHOP_SECRET": "shop-secret-from-env", "SHOP_CB": "cb", "SHOP_HOOK_SECRET": "hook-secret-0123456789"})
	cfg, err := LoadConfig([]string{"-config", path, "-api-keys", "a-long-enough-api-key-01"}, env, &bytes.Buffer{})
	require.NoError(t, err)
	require.Len(t, cfg.Apps, 2)
	shop := cfg.Apps[0]
	assert.Equal(t, AppConfig{
		Name: "shop", AppID: "wx0123456789abcdef", Secret: "shop-secret-from-env", CallbackToken: "tok$en-cb",
		RateLimit: 20, RateBurst: 5, QuotaReset: "04:00", TokenMode: token.ModeClassic,
		StatusWebhookURL: "https://hooks.example.com/wx?k=$x", StatusWebhookSecret: "hook-secret-0123456789",
	}, shop, "${VAR} expanded, $$ is a $, a lone $ stays")
	assert.Equal(t, AppConfig{Name: "news", AppID: "wxfedcba9876543210", Secret: "news-secret"}, cfg.Apps[1], "defaults: unlimited, midnight Shanghai, the global token mode")
}

func TestExpandEnv(t *testing.T) {
	env := envOf(map[string]string{"A": "x", "B_2": "y$z"})
	for _, tt := range []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "x"},
		{in: "pre-${A}-${B_2}-post", want: "pre-x-y$z-post"},
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "cost: 5$", want: "cost: 5$"},
		{in: "$A", want: "$A"},
		{in: "${MISSING}", err: "environment variable MISSING is not set"},
		{in: "${A", err: "unterminated"},
		{in: "${1BAD}", err: "not a valid environment variable name"},
	} {
		got, err := expandEnv(tt.in, env)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

// TestLoadConfigPerAppErrors: every error names the field (apps[i].x) and
// none shows a secret, even when a secret is what is wrong.
func TestLoadConfigPerAppErrors(t *testing.T) {
	dir := t.TempDir()
	const secret = "very-secret-value-0123"
	env := map[string]string{EnvAPIKeys: "a-long-enough-api-key-01", "SECRET": secret}
	head := "apps:\n  - {name: ok, appid: wx1, secret: s}\n"
	tests := []struct {
		name, app, want string
	}{
		{"unset variable", "  - {name: a, appid: wx1, secret: '${NOT_SET}'}\n", "apps[1].secret: environment variable NOT_SET is not set"},
		{"zero rate", "  - {name: a, appid: wx1, secret: '${SECRET}', rate_limit: 0}\n", "apps[1].rate_limit: must be > 0"},
		{"negative rate", "  - {name: a, appid: wx1, secret: '${SECRET}', rate_limit: -3}\n", "apps[1].rate_limit: must be > 0"},
		{"zero burst", "  - {name: a, appid: wx1, secret: s, rate_limit: 5, rate_burst: 0}\n", "apps[1].rate_burst: must be >= 1"},
		{"bad quota reset", "  - {name: a, appid: wx1, secret: s, quota_reset: '25:00'}\n", "apps[1].quota_reset"},
		{"bad zone", "  - {name: a, appid: wx1, secret: s, quota_reset: '00:00 Nowhere/City'}\n", "unknown time zone"},
		{"bad token mode", "  - {name: a, appid: wx1, secret: s, token_mode: fast}\n", `apps[1].token_mode "fast": must be stable or classic`},
		{"webhook without secret", "  - {name: a, appid: wx1, secret: s, status_webhook_url: 'https://h.example.com/x'}\n", "apps[1].status_webhook_secret: required with status_webhook_url"},
		{"short webhook secret", "  - {name: a, appid: wx1, secret: s, status_webhook_url: 'https://h.example.com/x', status_webhook_secret: short}\n", "apps[1].status_webhook_secret"},
		{"webhook not http", "  - {name: a, appid: wx1, secret: s, status_webhook_url: 'ftp://h', status_webhook_secret: '${SECRET}'}\n", "apps[1].status_webhook_url: must be an absolute http(s) URL"},
		{"webhook secret alone", "  - {name: a, appid: wx1, secret: s, status_webhook_secret: '${SECRET}'}\n", "apps[1].status_webhook_secret: set without status_webhook_url"},
		{"bad AES key from env", "  - {name: a, appid: wx1, secret: s, callback_token: t, encoding_aes_key: '${SECRET}'}\n", "apps[1].encoding_aes_key: must be 43 base64 characters"},
		{"missing appid", "  - {name: a, secret: '${SECRET}'}\n", "apps[1].appid: required"},
		{"unknown callback mode", "  - {name: a, appid: wx1, secret: s, callback_token: t, callback_mode: secure}\n", "apps[1].callback_mode \"secure\": must be safe, compat or plain"},
		{"safe mode without a key", "  - {name: a, appid: wx1, secret: s, callback_token: t, callback_mode: safe}\n", "apps[1].callback_mode safe: needs an encoding_aes_key"},
		{"compat mode without a key", "  - {name: a, appid: wx1, secret: s, callback_token: t, callback_mode: compat}\n", "apps[1].callback_mode compat: needs an encoding_aes_key"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			require.NoError(t, os.WriteFile(p, []byte(head+tt.app), 0o600))
			_, err := LoadConfig([]string{"-config", p}, envOf(env), &bytes.Buffer{})
			require.Error(t, err, "case %d", i)
			assert.ErrorIs(t, err, ErrUsage)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), secret, "no secret in errors")
		})
	}
}

// TestCallbackModeDefaults: safe when an EncodingAESKey is set, plain
// without one, and what the app file or WXPUSH_CALLBACK_MODE says otherwise.
func TestCallbackModeDefaults(t *testing.T) {
	key := wechat.Secret("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
	assert.Equal(t, wechat.ModeSafe, AppConfig{EncodingAESKey: key}.EffectiveCallbackMode())
	assert.Equal(t, wechat.ModePlain, AppConfig{CallbackToken: "t"}.EffectiveCallbackMode())
	assert.Equal(t, wechat.ModeCompat, AppConfig{EncodingAESKey: key, CallbackMode: wechat.ModeCompat}.EffectiveCallbackMode())
	assert.Equal(t, wechat.ModePlain, AppConfig{EncodingAESKey: key, CallbackMode: wechat.ModePlain}.EffectiveCallbackMode())

	env := map[string]string{
		EnvAPIKeys: "key-one-0123456789abcdef", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "s3cret",
		EnvCallbackToken: "cbtok", EnvEncodingAESKey: string(key), EnvCallbackMode: "compat",
	}
	cfg, err := LoadConfig(nil, envOf(env), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, wechat.ModeCompat, cfg.Apps[0].CallbackMode)
	env[EnvCallbackMode] = "none"
	_, err = LoadConfig(nil, envOf(env), &bytes.Buffer{})
	require.ErrorContains(t, err, "callback_mode")

	// -h names the settings read from the environment only.
	var help bytes.Buffer
	_, err = LoadConfig([]string{"-h"}, envOf(nil), &help)
	require.Error(t, err)
	for _, name := range []string{EnvAppID, EnvAppSecret, EnvCallbackToken, EnvEncodingAESKey, EnvCallbackMode, EnvConfig} {
		assert.Contains(t, help.String(), name)
	}
}

// TestLoadConfigInboundSettings: the default app's replies and event
// webhook from the environment, --follower-check from flag and env, and
// clear errors that never show the webhook secret.
func TestLoadConfigInboundSettings(t *testing.T) {
	const secret = "event-webhook-secret-0123456789"
	base := map[string]string{EnvAPIKeys: "a-long-enough-api-key-01", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "s", EnvCallbackToken: "cbtok"}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cfg, err := LoadConfig(nil, envOf(with(EnvReplies, `[{"on":"subscribe","text":"hi"},{"keyword":"help","match":"prefix","text":"menu"}]`,
		EnvEventWebhookURL, "https://hooks.example.com/wx", EnvEventWebhookSecret, secret)), &bytes.Buffer{})
	require.NoError(t, err)
	require.Len(t, cfg.Apps[0].Replies, 2)
	assert.Equal(t, "prefix", cfg.Apps[0].Replies[1].Match)
	assert.Equal(t, "https://hooks.example.com/wx", cfg.Apps[0].EventWebhookURL)
	assert.Equal(t, wechat.Secret(secret), cfg.Apps[0].EventWebhookSecret)
	assert.False(t, cfg.NoFollowerCheck, "on by default")

	cfg, err = LoadConfig(nil, envOf(with(EnvFollowerCheck, "off")), &bytes.Buffer{})
	require.NoError(t, err)
	assert.True(t, cfg.NoFollowerCheck)
	cfg, err = LoadConfig([]string{"-follower-check", "on"}, envOf(with(EnvFollowerCheck, "off")), &bytes.Buffer{})
	require.NoError(t, err)
	assert.False(t, cfg.NoFollowerCheck, "the flag wins")

	for name, env := range map[string]map[string]string{
		"replies not JSON":          with(EnvReplies, `{on: subscribe}`),
		"reply with an unknown key": with(EnvReplies, `[{"on":"subscribe","txt":"hi"}]`),
		"reply without text":        with(EnvReplies, `[{"on":"subscribe"}]`),
		"follower check maybe":      with(EnvFollowerCheck, "maybe"),
		"webhook not http":          with(EnvEventWebhookURL, "ftp://h", EnvEventWebhookSecret, secret),
		"webhook without secret":    with(EnvEventWebhookURL, "https://hooks.example.com/wx"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(nil, envOf(env), &bytes.Buffer{})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrUsage)
			assert.NotContains(t, err.Error(), secret)
		})
	}
}

// TestLoadConfigConsole: the web console is on by default; -console=false
// or WXPUSH_CONSOLE=false turns it off, the flag wins over the variable,
// a variable that is not a bool is a usage error, and -h lists both.
func TestLoadConfigConsole(t *testing.T) {
	base := map[string]string{EnvAPIKeys: "a-long-enough-api-key-01", EnvAppID: "wx0123456789abcdef", EnvAppSecret: "s"}
	with := func(k, v string) map[string]string {
		m := maps.Clone(base)
		m[k] = v
		return m
	}
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		off  bool
	}{
		{"default on", nil, base, false},
		{"flag off", []string{"-console=false"}, base, true},
		{"env off", nil, with(EnvConsole, "false"), true},
		{"env 0", nil, with(EnvConsole, "0"), true},
		{"env on", nil, with(EnvConsole, "true"), false},
		{"flag wins over env", []string{"-console"}, with(EnvConsole, "false"), false},
		{"flag off wins over env on", []string{"-console=false"}, with(EnvConsole, "true"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(tt.args, envOf(tt.env), &bytes.Buffer{})
			require.NoError(t, err)
			assert.Equal(t, tt.off, cfg.NoConsole, "args %q env %s=%q", tt.args, EnvConsole, tt.env[EnvConsole])
		})
	}
	_, err := LoadConfig(nil, envOf(with(EnvConsole, "maybe")), &bytes.Buffer{})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), EnvConsole)

	var help bytes.Buffer
	_, err = LoadConfig([]string{"-h"}, envOf(nil), &help)
	require.Error(t, err)
	assert.Contains(t, help.String(), "-console")
	assert.Contains(t, help.String(), EnvConsole)
}
