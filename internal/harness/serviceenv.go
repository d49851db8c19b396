package harness

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// ServiceEnv is cfg as a wxpushd process reads it: WXPUSH_* variables
// (and LOG_LEVEL), and an apps file to be placed at appsPath whose secrets
// are ${VAR} references to variables of env, as in a committed file.
// Settings left zero are left to wxpushd's defaults. Settings that have no
// variable (KeyPrefix, InsecureNoAuth, NoWorkers) are refused.
func ServiceEnv(cfg wxpushd.Config, appsPath string) (env map[string]string, appsFile []byte, err error) {
	if cfg.KeyPrefix != "" || cfg.InsecureNoAuth || cfg.NoWorkers {
		return nil, nil, errors.New("harness: KeyPrefix, InsecureNoAuth and NoWorkers have no environment variable")
	}
	env = map[string]string{}
	set := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	num := func(k string, n int) {
		if n != 0 {
			env[k] = strconv.Itoa(n)
		}
	}
	dur := func(k string, d time.Duration) {
		if d != 0 {
			env[k] = d.String()
		}
	}
	float := func(k string, f float64) {
		if f != 0 {
			env[k] = strconv.FormatFloat(f, 'f', -1, 64)
		}
	}
	set(wxpushd.EnvAddr, cfg.Addr)
	set(wxpushd.EnvRedisURL, cfg.RedisURL)
	set(wxpushd.EnvWeChatBaseURL, cfg.WeChatBaseURL)
	keys := make([]string, len(cfg.APIKeys))
	for i, k := range cfg.APIKeys {
		keys[i] = k.Reveal()
	}
	set(wxpushd.EnvAPIKeys, strings.Join(keys, ","))
	set("WXPUSH_TOKEN_MODE", string(cfg.TokenMode))
	num("WXPUSH_TOKEN_DAILY_BUDGET", cfg.TokenDailyBudget)
	num("WXPUSH_WORKERS", cfg.Workers)
	num("WXPUSH_MAX_ATTEMPTS", cfg.MaxAttempts)
	dur("WXPUSH_BACKOFF_BASE", cfg.BackoffBase)
	dur("WXPUSH_BACKOFF_CAP", cfg.BackoffCap)
	dur("WXPUSH_SEND_TIMEOUT", cfg.SendTimeout)
	dur("WXPUSH_VISIBILITY_TIMEOUT", cfg.Visibility)
	dur("WXPUSH_IDEMPOTENCY_TTL", cfg.IdempotencyTTL)
	dur("WXPUSH_RETENTION", cfg.Retention)
	dur("WXPUSH_SHUTDOWN_TIMEOUT", cfg.ShutdownTimeout)
	dur("WXPUSH_PACE_DELAY", cfg.PaceDelay)
	dur("WXPUSH_QUOTA_DELAY", cfg.QuotaDelay)
	dur("WXPUSH_APP_DELAY", cfg.AppDelay)
	dur("WXPUSH_DEDUP_WINDOW", cfg.DedupWindow)
	dur("WXPUSH_WEBHOOK_TIMEOUT", cfg.WebhookTimeout)
	dur("WXPUSH_WEBHOOK_BACKOFF_BASE", cfg.WebhookBackoffBase)
	dur("WXPUSH_WEBHOOK_BACKOFF_CAP", cfg.WebhookBackoffCap)
	num("WXPUSH_WEBHOOK_MAX_ATTEMPTS", cfg.WebhookMaxAttempts)
	dur("WXPUSH_CALLBACK_MAX_SKEW", cfg.CallbackMaxSkew)
	dur("WXPUSH_STORE_CHECK_INTERVAL", cfg.StoreCheckInterval)
	dur("WXPUSH_READ_TIMEOUT", cfg.ReadTimeout)
	dur("WXPUSH_WRITE_TIMEOUT", cfg.WriteTimeout)
	dur("WXPUSH_IDLE_TIMEOUT", cfg.IdleTimeout)
	num("WXPUSH_MAX_CONNS", cfg.MaxConns)
	float("WXPUSH_RATE_LIMIT_PER_KEY", cfg.RateLimitPerKey)
	num("WXPUSH_RATE_BURST_PER_KEY", cfg.RateBurstPerKey)
	float("WXPUSH_RATE_LIMIT_GLOBAL", cfg.RateLimitGlobal)
	num("WXPUSH_RATE_BURST_GLOBAL", cfg.RateBurstGlobal)
	set("WXPUSH_INSTANCE", cfg.Instance)
	set("LOG_LEVEL", cfg.LogLevel)
	if cfg.NoFollowerCheck {
		env[wxpushd.EnvFollowerCheck] = "off"
	}
	if cfg.NoConsole {
		env[wxpushd.EnvConsole] = "false"
	}
	if len(cfg.Apps) == 0 {
		return env, nil, nil
	}

	// The apps file: strings other than secrets escape $ ($$); secrets are
	// ${WXPUSH_HARNESS_APPi_FIELD} and live in env.
	type entry struct {
		Name                   string   `yaml:"name"`
		AppID                  string   `yaml:"appid"`
		Secret                 string   `yaml:"secret,omitempty"`
		CallbackToken          string   `yaml:"callback_token,omitempty"`
		EncodingAESKey         string   `yaml:"encoding_aes_key,omitempty"`
		PreviousEncodingAESKey string   `yaml:"previous_encoding_aes_key,omitempty"`
		CallbackMode           string   `yaml:"callback_mode,omitempty"`
		RateLimit              *float64 `yaml:"rate_limit,omitempty"`
		RateBurst              *int     `yaml:"rate_burst,omitempty"`
		QuotaReset             string   `yaml:"quota_reset,omitempty"`
		TokenMode              string   `yaml:"token_mode,omitempty"`
		StatusWebhookURL       string   `yaml:"status_webhook_url,omitempty"`
		StatusWebhookSecret    string   `yaml:"status_webhook_secret,omitempty"`
		EventWebhookURL        string   `yaml:"event_webhook_url,omitempty"`
		EventWebhookSecret     string   `yaml:"event_webhook_secret,omitempty"`
		Replies                any      `yaml:"replies,omitempty"`
	}
	lit := func(s string) string { return strings.ReplaceAll(s, "$", "$$") }
	var f struct {
		Apps []entry `yaml:"apps"`
	}
	for i, a := range cfg.Apps {
		secret := func(field string, s wechat.Secret) string {
			if s == "" {
				return ""
			}
			name := fmt.Sprintf("WXPUSH_HARNESS_APP%d_%s", i, field)
			env[name] = s.Reveal()
			return "${" + name + "}"
		}
		en := entry{
			Name: lit(a.Name), AppID: lit(a.AppID), Secret: secret("SECRET", a.Secret),
			CallbackToken: secret("CALLBACK_TOKEN", a.CallbackToken), EncodingAESKey: secret("ENCODING_AES_KEY", a.EncodingAESKey),
			PreviousEncodingAESKey: secret("PREVIOUS_ENCODING_AES_KEY", a.PreviousEncodingAESKey),
			CallbackMode:           lit(string(a.CallbackMode)), QuotaReset: lit(a.QuotaReset), TokenMode: lit(string(a.TokenMode)),
			StatusWebhookURL: lit(a.StatusWebhookURL), StatusWebhookSecret: secret("STATUS_WEBHOOK_SECRET", a.StatusWebhookSecret),
			EventWebhookURL: lit(a.EventWebhookURL), EventWebhookSecret: secret("EVENT_WEBHOOK_SECRET", a.EventWebhookSecret),
		}
		if a.RateLimit != 0 {
			en.RateLimit = &a.RateLimit
		}
		if a.RateBurst != 0 {
			en.RateBurst = &a.RateBurst
		}
		if len(a.Replies) > 0 {
			en.Replies = a.Replies // taken verbatim by wxpushd: no ${VAR} in a reply
		}
		f.Apps = append(f.Apps, en)
	}
	if appsFile, err = yaml.Marshal(f); err != nil {
		return nil, nil, fmt.Errorf("harness: apps file: %w", err)
	}
	env[wxpushd.EnvConfig] = appsPath
	return env, appsFile, nil
}
