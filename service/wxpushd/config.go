package wxpushd

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/token"
)

// AppConfig is one WeChat app the service sends for.
type AppConfig struct {
	// Name is how API clients refer to the app ("app" in a request).
	Name   string        `yaml:"name"`
	AppID  string        `yaml:"appid"`
	Secret wechat.Secret `yaml:"secret"`
	// Callback settings, for delivery reports.
	CallbackToken          wechat.Secret `yaml:"callback_token,omitempty"`
	EncodingAESKey         wechat.Secret `yaml:"encoding_aes_key,omitempty"`
	PreviousEncodingAESKey wechat.Secret `yaml:"previous_encoding_aes_key,omitempty"`
}

// Config is everything wxpushd runs with. LoadConfig fills it from flags,
// WXPUSH_* variables and the apps file; tests build it directly.
type Config struct {
	Addr           string // listen address (WXPUSH_ADDR, default :8080)
	RedisURL       string // empty: embedded in-process store, not durable
	WeChatBaseURL  string // default https://api.weixin.qq.com
	APIKeys        []wechat.Secret
	InsecureNoAuth bool
	Apps           []AppConfig

	TokenMode        token.Mode // stable (default) or classic
	TokenDailyBudget int        // token calls per app per day across instances (0: the token package's default)

	Workers         int           // concurrent sends per instance (default 16)
	MaxAttempts     int           // default 8
	BackoffBase     time.Duration // default 1 s
	BackoffCap      time.Duration // default 5 min
	SendTimeout     time.Duration // default 10 s
	Visibility      time.Duration // default 60 s
	IdempotencyTTL  time.Duration // default 24 h
	Retention       time.Duration // default 7 days
	ShutdownTimeout time.Duration // default 15 s
	PaceDelay       time.Duration // wait after 45011 (default 60 s)
	QuotaDelay      time.Duration // re-check interval after 45009 (default 5 min)
	AppDelay        time.Duration // re-check interval after an app-level error (default 5 min)
	CallbackMaxSkew time.Duration // accepted distance of a callback's timestamp from the clock (default 5 min)
	Instance        string        // consumer name; default host-pid-random
	KeyPrefix       string        // Redis key prefix with hash tag (default "wxp:{wxp}:")
	NoWorkers       bool          // serve the API only; other instances send
	LogLevel        string        // debug, info, warn, error
}

// Environment variables read by LoadConfig.
const (
	EnvAddr           = "WXPUSH_ADDR"
	EnvRedisURL       = "WXPUSH_REDIS_URL"
	EnvWeChatBaseURL  = "WXPUSH_WECHAT_BASE_URL"
	EnvAPIKeys        = "WXPUSH_API_KEYS"
	EnvConfig         = "WXPUSH_CONFIG"
	EnvAppID          = "WXPUSH_APP_ID"
	EnvAppSecret      = "WXPUSH_APP_SECRET"
	EnvCallbackToken  = "WXPUSH_CALLBACK_TOKEN"
	EnvEncodingAESKey = "WXPUSH_ENCODING_AES_KEY"
)

// ErrUsage marks configuration errors (exit status 2).
var ErrUsage = errors.New("usage")

// LoadConfig parses flags whose defaults come from WXPUSH_* variables, and
// the apps: from the YAML file named by -config / WXPUSH_CONFIG, or one app
// "default" from WXPUSH_APP_ID, WXPUSH_APP_SECRET, WXPUSH_CALLBACK_TOKEN and
// WXPUSH_ENCODING_AES_KEY.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("wxpushd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	var keys, configPath, mode string
	fs.StringVar(&c.Addr, "addr", env(EnvAddr, ":8080"), "listen address (env WXPUSH_ADDR)")
	fs.StringVar(&c.RedisURL, "redis-url", env(EnvRedisURL, ""), "Redis URL: redis://, rediss://, redis://...?master_name=M (Sentinel), cluster+redis://... (Cluster); empty: embedded, not durable (env WXPUSH_REDIS_URL)")
	fs.StringVar(&c.WeChatBaseURL, "wechat-base-url", env(EnvWeChatBaseURL, wechat.DefaultBaseURL), "WeChat API base URL (env WXPUSH_WECHAT_BASE_URL)")
	fs.StringVar(&keys, "api-keys", env(EnvAPIKeys, ""), "comma-separated bearer API keys (env WXPUSH_API_KEYS)")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", false, "serve the API without authentication (development only)")
	fs.BoolVar(&c.NoWorkers, "no-workers", false, "serve the API only, without sending (other instances send)")
	fs.StringVar(&configPath, "config", env(EnvConfig, ""), "YAML file with apps (env WXPUSH_CONFIG)")
	fs.StringVar(&mode, "token-mode", env("WXPUSH_TOKEN_MODE", string(token.ModeStable)), "stable (/cgi-bin/stable_token) or classic (/cgi-bin/token) (env WXPUSH_TOKEN_MODE)")
	intVar := func(p *int, name, envName string, def int, usage string) {
		d := def
		if v := getenv(envName); v != "" {
			if n, err := strconv.Atoi(v); err == nil {
				d = n
			}
		}
		fs.IntVar(p, name, d, usage+" (env "+envName+")")
	}
	durVar := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		d := def
		if v := getenv(envName); v != "" {
			if x, err := time.ParseDuration(v); err == nil {
				d = x
			}
		}
		fs.DurationVar(p, name, d, usage+" (env "+envName+")")
	}
	intVar(&c.TokenDailyBudget, "token-daily-budget", "WXPUSH_TOKEN_DAILY_BUDGET", 0, "token calls per app per day across instances; 0: 1000 classic, 10000 stable")
	intVar(&c.Workers, "workers", "WXPUSH_WORKERS", 16, "concurrent sends per instance")
	intVar(&c.MaxAttempts, "max-attempts", "WXPUSH_MAX_ATTEMPTS", 8, "send attempts before a message fails with attempts_exhausted")
	durVar(&c.BackoffBase, "backoff-base", "WXPUSH_BACKOFF_BASE", time.Second, "first retry delay bound")
	durVar(&c.BackoffCap, "backoff-cap", "WXPUSH_BACKOFF_CAP", 5*time.Minute, "largest retry delay bound")
	durVar(&c.SendTimeout, "send-timeout", "WXPUSH_SEND_TIMEOUT", 10*time.Second, "timeout of one WeChat call")
	durVar(&c.Visibility, "visibility-timeout", "WXPUSH_VISIBILITY_TIMEOUT", 60*time.Second, "a message unacknowledged this long is reclaimed by another worker")
	durVar(&c.IdempotencyTTL, "idempotency-ttl", "WXPUSH_IDEMPOTENCY_TTL", 24*time.Hour, "how long Idempotency-Key values are remembered")
	durVar(&c.Retention, "retention", "WXPUSH_RETENTION", 7*24*time.Hour, "how long message records are kept")
	durVar(&c.ShutdownTimeout, "shutdown-timeout", "WXPUSH_SHUTDOWN_TIMEOUT", 15*time.Second, "bound on graceful shutdown")
	durVar(&c.PaceDelay, "pace-delay", "WXPUSH_PACE_DELAY", 60*time.Second, "wait after 45011 (per-minute limit)")
	durVar(&c.QuotaDelay, "quota-delay", "WXPUSH_QUOTA_DELAY", 5*time.Minute, "re-check interval after 45009 (daily quota)")
	durVar(&c.AppDelay, "app-delay", "WXPUSH_APP_DELAY", 5*time.Minute, "re-check interval after an app-level error (bad secret, IP whitelist...)")
	durVar(&c.CallbackMaxSkew, "callback-max-skew", "WXPUSH_CALLBACK_MAX_SKEW", 5*time.Minute, "WeChat callbacks whose timestamp is further than this from the clock are refused (replay protection)")
	fs.StringVar(&c.Instance, "instance", env("WXPUSH_INSTANCE", ""), "this instance's name in the consumer group (env WXPUSH_INSTANCE)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	c.TokenMode = token.Mode(mode)
	for k := range strings.SplitSeq(keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.APIKeys = append(c.APIKeys, wechat.Secret(k))
		}
	}
	if configPath != "" {
		apps, err := loadApps(configPath)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		c.Apps = apps
	} else if id := getenv(EnvAppID); id != "" {
		c.Apps = []AppConfig{{
			Name: "default", AppID: id, Secret: wechat.Secret(getenv(EnvAppSecret)),
			CallbackToken: wechat.Secret(getenv(EnvCallbackToken)), EncodingAESKey: wechat.Secret(getenv(EnvEncodingAESKey)),
		}}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return c, nil
}

// appsFile is the YAML layout of WXPUSH_CONFIG.
type appsFile struct {
	Apps []struct {
		Name                   string `yaml:"name"`
		AppID                  string `yaml:"appid"`
		Secret                 string `yaml:"secret"`
		CallbackToken          string `yaml:"callback_token"`
		EncodingAESKey         string `yaml:"encoding_aes_key"`
		PreviousEncodingAESKey string `yaml:"previous_encoding_aes_key"`
	} `yaml:"apps"`
}

func loadApps(path string) ([]AppConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apps file: %w", err)
	}
	var f appsFile
	if err := yaml.UnmarshalWithOptions(bytes.TrimSpace(data), &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("apps file %s: %s", path, yaml.FormatError(err, false, true))
	}
	apps := make([]AppConfig, 0, len(f.Apps))
	for _, a := range f.Apps {
		apps = append(apps, AppConfig{
			Name: a.Name, AppID: a.AppID, Secret: wechat.Secret(a.Secret),
			CallbackToken: wechat.Secret(a.CallbackToken), EncodingAESKey: wechat.Secret(a.EncodingAESKey),
			PreviousEncodingAESKey: wechat.Secret(a.PreviousEncodingAESKey),
		})
	}
	return apps, nil
}

var appNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Validate checks the config; messages name the setting, never a secret.
func (c Config) Validate() error {
	var errs []error
	if len(c.APIKeys) == 0 && !c.InsecureNoAuth {
		errs = append(errs, errors.New("no API keys: set WXPUSH_API_KEYS (or pass --insecure-no-auth for development)"))
	}
	for i, k := range c.APIKeys {
		if len(k.Reveal()) < 16 {
			errs = append(errs, fmt.Errorf("API key %d is shorter than 16 characters", i+1))
		}
	}
	if len(c.Apps) == 0 {
		errs = append(errs, errors.New("no apps: set WXPUSH_APP_ID and WXPUSH_APP_SECRET, or WXPUSH_CONFIG"))
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		switch {
		case !appNamePattern.MatchString(a.Name):
			errs = append(errs, fmt.Errorf("apps[%d].name %q: 1-32 of a-z 0-9 _ -, starting with a letter or digit", i, a.Name))
		case seen[a.Name]:
			errs = append(errs, fmt.Errorf("apps[%d].name %q is configured twice", i, a.Name))
		}
		seen[a.Name] = true
		if a.AppID == "" {
			errs = append(errs, fmt.Errorf("apps[%d] (%s): appid is required", i, a.Name))
		}
		if a.Secret == "" {
			errs = append(errs, fmt.Errorf("apps[%d] (%s): secret is required", i, a.Name))
		}
		for _, k := range []wechat.Secret{a.EncodingAESKey, a.PreviousEncodingAESKey} {
			if k != "" {
				if _, err := wechat.DecodeAESKey(k.Reveal()); err != nil {
					errs = append(errs, fmt.Errorf("apps[%d] (%s): encoding_aes_key must be 43 base64 characters", i, a.Name))
				}
			}
		}
		if a.EncodingAESKey != "" && a.CallbackToken == "" {
			errs = append(errs, fmt.Errorf("apps[%d] (%s): encoding_aes_key needs a callback_token", i, a.Name))
		}
		if a.PreviousEncodingAESKey != "" && a.EncodingAESKey == "" {
			errs = append(errs, fmt.Errorf("apps[%d] (%s): previous_encoding_aes_key needs an encoding_aes_key", i, a.Name))
		}
	}
	if c.TokenMode != token.ModeStable && c.TokenMode != token.ModeClassic && c.TokenMode != "" {
		errs = append(errs, fmt.Errorf("token mode %q: must be stable or classic", c.TokenMode))
	}
	if c.Workers < 0 || c.MaxAttempts < 0 || c.TokenDailyBudget < 0 {
		errs = append(errs, errors.New("workers, max-attempts and token-daily-budget must not be negative"))
	}
	if c.WeChatBaseURL != "" {
		if _, err := wechat.NewClient(c.WeChatBaseURL, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
