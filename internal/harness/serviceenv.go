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
	num("WXPUSH_PARTITIONS", cfg.Partitions)
	num("WXPUSH_REDIS_WAIT_REPLICAS", cfg.RedisWaitReplicas)
	dur("WXPUSH_REDIS_WAIT_TIMEOUT", cfg.RedisWaitTimeout)
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

	// The apps file (its keys are wxpushd's; it reads it strictly): strings
	// other than secrets escape $ ($$); secrets are
	// ${WXPUSH_HARNESS_APPi_FIELD} and live in env.
	var f struct {
		Apps []map[string]any `yaml:"apps"`
	}
	for i, a := range cfg.Apps {
		en := map[string]any{}
		put := func(key, v string) {
			if v != "" {
				en[key] = strings.ReplaceAll(v, "$", "$$")
			}
		}
		secret := func(key string, s wechat.Secret) {
			if s != "" {
				name := fmt.Sprintf("WXPUSH_HARNESS_APP%d_%s", i, strings.ToUpper(key))
				env[name] = s.Reveal()
				en[key] = "${" + name + "}"
			}
		}
		put("name", a.Name)
		put("appid", a.AppID)
		secret("secret", a.Secret)
		secret("callback_token", a.CallbackToken)
		secret("encoding_aes_key", a.EncodingAESKey)
		secret("previous_encoding_aes_key", a.PreviousEncodingAESKey)
		put("callback_mode", string(a.CallbackMode))
		put("quota_reset", a.QuotaReset)
		put("token_mode", string(a.TokenMode))
		put("status_webhook_url", a.StatusWebhookURL)
		secret("status_webhook_secret", a.StatusWebhookSecret)
		put("event_webhook_url", a.EventWebhookURL)
		secret("event_webhook_secret", a.EventWebhookSecret)
		if a.RateLimit != 0 {
			en["rate_limit"] = a.RateLimit
		}
		if a.RateBurst != 0 {
			en["rate_burst"] = a.RateBurst
		}
		if len(a.Replies) > 0 {
			en["replies"] = a.Replies // taken verbatim by wxpushd: no ${VAR} in a reply
		}
		f.Apps = append(f.Apps, en)
	}
	if appsFile, err = yaml.Marshal(f); err != nil {
		return nil, nil, fmt.Errorf("harness: apps file: %w", err)
	}
	env[wxpushd.EnvConfig] = appsPath
	return env, appsFile, nil
}
