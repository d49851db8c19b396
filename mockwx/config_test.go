package mockwx_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

const sampleConfig = `
settings:
  token_grace_seconds: 60
apps:
  - appid: wx0123456789abcdef
    secret: s3cret
    callback_url: http://127.0.0.1:8080/wechat/callback/shop
    callback_token: tok
    encoding_aes_key: abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
    callback_mode: safe
    token_expires_in: 60
    templates:
      - id: tpl_a
        fields:
          - {key: thing1, type: thing}
          - {key: const2, type: const, values: [ok, ko]}
    followers:
      only: [oOnlyFollower-0001]
rules:
  - endpoint: template_send
    errcode: -1
    probability: 0.2
`

func TestParseConfig(t *testing.T) {
	cfg, err := mockwx.ParseConfig([]byte(sampleConfig))
	require.NoError(t, err)
	require.Len(t, cfg.Apps, 1)
	assert.Equal(t, wechat.ModeSafe, cfg.Apps[0].CallbackMode)
	assert.Equal(t, 60, cfg.Settings.TokenGraceSeconds)
	require.Len(t, cfg.Rules, 1)
	assert.Equal(t, -1, cfg.Rules[0].ErrCode)

	s := mockwxtest.NewServer(t, mockwxtest.Options{Config: cfg})
	apps, err := s.Admin.Apps(t.Context())
	require.NoError(t, err)
	require.Len(t, apps, 2, "the demo app and the configured one")
	assert.Equal(t, mockwx.DemoAppID, apps[0].AppID)
	assert.Equal(t, "wx0123456789abcdef", apps[1].AppID)
	assert.Equal(t, 60, apps[1].TokenExpiresIn)
	assert.Equal(t, 2000, apps[1].TokenDailyLimit, "defaults are filled in")
	assert.Equal(t, "tpl_a", apps[1].Templates[0].ID)
	rules, err := s.Admin.Faults(t.Context())
	require.NoError(t, err)
	assert.Len(t, rules, 1, "rules are preloaded")
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key with line", "apps:\n  - appid: wx0123456789abcdef\n    secret: x\n    colour: red\n", "[4:5]"},
		{"bad appid", "apps:\n  - appid: nope\n    secret: x\n", "apps[0].appid"},
		{"missing secret", "apps:\n  - appid: wx0123456789abcdef\n", "apps[0].secret: required"},
		{"bad mode", "apps:\n  - appid: wx0123456789abcdef\n    secret: x\n    callback_mode: loud\n", "callback_mode"},
		{"bad key", "apps:\n  - appid: wx0123456789abcdef\n    secret: x\n    encoding_aes_key: short\n", "encoding_aes_key"},
		{"safe without key", "no_demo_app: true\napps:\n  - appid: wx0123456789abcdef\n    secret: x\n    callback_url: http://x\n    callback_token: t\n    callback_mode: safe\n", "apps[0].encoding_aes_key: required in safe mode"},
		{"bad field type", "apps:\n  - appid: wx0123456789abcdef\n    secret: x\n    templates:\n      - id: t\n        fields: [{key: a, type: colour}]\n", "fields[0].type"},
		{"duplicate appid", "apps:\n  - appid: " + mockwx.DemoAppID + "\n    secret: x\n", "configured twice"},
		{"bad rule", "rules:\n  - endpoint: token\n    probability: 3\n", "rules[0]"},
		{"negative setting", "settings:\n  callback_delay_ms: -1\n", "settings.callback_delay_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mockwx.ParseConfig([]byte(tt.yaml))
			require.Error(t, err, "ParseConfig(%q)", tt.yaml)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mock.yaml")
	require.NoError(t, os.WriteFile(path, []byte(sampleConfig), 0o600))
	cfg, err := mockwx.LoadConfig(path)
	require.NoError(t, err)
	assert.Len(t, cfg.Apps, 1)
	_, err = mockwx.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml"))
	assert.Error(t, err)
}

func TestApplyEnvAdjustsDemoApp(t *testing.T) {
	env := map[string]string{
		mockwx.EnvAppID: "wxfeedfacecafebeef", mockwx.EnvAppSecret: "other-secret",
		mockwx.EnvCallbackURL: "http://127.0.0.1:1/cb", mockwx.EnvCallbackToken: "t2",
		mockwx.EnvEncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", mockwx.EnvCallbackMode: "compat",
	}
	cfg := mockwx.ApplyEnv(mockwx.Config{}, func(k string) string { return env[k] })
	require.NoError(t, cfg.Validate())
	app := cfg.AllApps()[0]
	assert.Equal(t, "wxfeedfacecafebeef", app.AppID)
	assert.Equal(t, "other-secret", app.Secret)
	assert.Equal(t, "http://127.0.0.1:1/cb", app.CallbackURL)
	assert.Equal(t, "t2", app.CallbackToken)
	assert.Equal(t, wechat.ModeCompat, app.CallbackMode)
	assert.Len(t, app.Templates, 4, "templates stay")

	bad := mockwx.ApplyEnv(mockwx.Config{}, func(k string) string {
		return map[string]string{mockwx.EnvCallbackMode: "loud"}[k]
	})
	assert.ErrorContains(t, bad.Validate(), "callback_mode")
}

func TestDemoAppIsValid(t *testing.T) {
	require.NoError(t, mockwx.Config{}.Validate())
	_, err := wechat.DecodeAESKey(mockwx.DemoEncodingAESKey)
	require.NoError(t, err)
}
