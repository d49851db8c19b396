package wxpushd

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/pacing"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/internal/token"
	"github.com/wxpush/wxpush/service/internal/worker"
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
	// CallbackMode is the mode the app's pushes must come in: safe (the
	// default when an EncodingAESKey is set), compat, or plain (the
	// default without one). In safe and compat mode a push that is not
	// encrypted and signed with msg_signature is refused (a downgrade);
	// plain mode trusts the URL signature alone, which does not cover the
	// body.
	CallbackMode wechat.Mode `yaml:"callback_mode,omitempty"`

	// RateLimit is the most messages per second the app sends, across all
	// instances together (GCRA in Redis); 0: unlimited.
	RateLimit float64 `yaml:"rate_limit,omitempty"`
	// RateBurst is how many messages may go at once within RateLimit
	// (default 1: evenly spaced).
	RateBurst int `yaml:"rate_burst,omitempty"`
	// QuotaReset is when the app's WeChat daily quota resets: "HH:MM",
	// optionally followed by a time zone; default "00:00 Asia/Shanghai".
	// A 45009 pauses the app until then.
	QuotaReset string `yaml:"quota_reset,omitempty"`
	// TokenMode is the app's token endpoint (stable or classic); empty:
	// Config.TokenMode.
	TokenMode token.Mode `yaml:"token_mode,omitempty"`
	// StatusWebhookURL, when set, receives the final status of each of
	// the app's messages, signed with StatusWebhookSecret.
	StatusWebhookURL    string        `yaml:"status_webhook_url,omitempty"`
	StatusWebhookSecret wechat.Secret `yaml:"status_webhook_secret,omitempty"`
	// EventWebhookURL, when set, receives every inbound push of the app
	// other than delivery reports (events and user messages), signed with
	// EventWebhookSecret; it needs a callback token.
	EventWebhookURL    string        `yaml:"event_webhook_url,omitempty"`
	EventWebhookSecret wechat.Secret `yaml:"event_webhook_secret,omitempty"`
	// Replies are the passive replies to the app's pushes, first match
	// wins; they need a callback token.
	Replies apps.Replies `yaml:"replies,omitempty"`
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
	// PaceDelay is how long a 45011 (per-minute limit) pauses the app
	// across all instances (default 60 s).
	PaceDelay time.Duration
	// QuotaDelay is the probe interval of an app paused by 45009 (daily
	// quota): one waiting message is sent this often to notice a quota
	// that came back early (clear_quota). Default 5 min; negative: no
	// probe, the pause lasts until the quota reset or an operator resumes.
	QuotaDelay time.Duration
	// AppDelay, when positive, is the probe interval of an app paused by
	// an app-level errcode (bad appid or secret, IP whitelist, 48001...);
	// default 0: only an operator resumes it (POST /v1/apps/{app}/resume).
	AppDelay time.Duration
	// DedupWindow is how long WeChat drops a resend with the same
	// client_msg_id (default 10 min): after an attempt whose outcome is
	// unknown, a resend begins only inside it, less worker.DedupMargin
	// (the send timeout and a tenth of the window); a message that would
	// need a later resend fails as unconfirmed.
	DedupWindow time.Duration
	// Status webhooks: one delivery's timeout (default 10 s), the retry
	// backoff bounds (defaults 1 s and 10 min) and the attempts before an
	// event is given up (default 20).
	WebhookTimeout     time.Duration
	WebhookBackoffBase time.Duration
	WebhookBackoffCap  time.Duration
	WebhookMaxAttempts int
	CallbackMaxSkew    time.Duration // accepted distance of a callback's timestamp from the clock (default 5 min)
	Instance           string        // consumer name; default host-pid-random
	KeyPrefix          string        // Redis key prefix with hash tag (default "wxp:{wxp}:")
	// Partitions splits the queue into this many partitions, each under a
	// hash tag of its own, so that a Redis Cluster spreads them over its
	// masters (default 1; at most store.MaxPartitions). Every instance
	// must use the same count; a start with another count than the store
	// was written with is refused.
	Partitions int
	// RedisWaitReplicas, when positive, makes every write the service
	// acknowledges (a 202, a callback's success) wait until that many
	// replicas have it (WAIT), at most RedisWaitTimeout (default 1 s);
	// else the API answers 503. 0: Redis's asynchronous replication.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration
	NoWorkers         bool // serve the API only; other instances send
	// NoFollowerCheck (--follower-check=off) sends to users the service
	// knows do not follow the account instead of failing their messages
	// as not_following.
	NoFollowerCheck bool
	// NoConsole (--console=false) turns the web console at /console off.
	NoConsole bool
	LogLevel  string // debug, info, warn, error

	// StoreCheckInterval is how often the instance checks that Redis kept
	// its data (the store epoch); it also checks on every new connection
	// to Redis. Default 5 s.
	StoreCheckInterval time.Duration
	// HTTP server bounds against slow and greedy clients. ReadTimeout
	// bounds reading one request, headers and body (default 30 s);
	// WriteTimeout bounds a request from the end of its headers to the
	// end of the answer, so it must be at least ReadTimeout (default
	// 60 s); IdleTimeout closes a keep-alive connection with no request
	// (default 120 s). MaxConns bounds the connections served at once
	// (default 4096; lowered at start to what the file descriptor limit
	// allows): further clients wait in the kernel's accept queue.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	MaxConns     int
	// Inbound rate limits of /v1 (GCRA in Redis, shared by all instances):
	// requests per second per API key and for the whole service, each
	// with its burst (0: one second's worth); 0: no limit (the default). Over a limit
	// the answer is 429 with Retry-After. The WeChat callback route and
	// the probes are never limited.
	RateLimitPerKey float64
	RateBurstPerKey int
	RateLimitGlobal float64
	RateBurstGlobal int
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
	EnvCallbackMode   = "WXPUSH_CALLBACK_MODE"
	// EnvEventWebhookURL and EnvEventWebhookSecret set the default app's
	// event webhook; EnvReplies its replies, a JSON array of rules.
	EnvEventWebhookURL    = "WXPUSH_EVENT_WEBHOOK_URL"
	EnvEventWebhookSecret = "WXPUSH_EVENT_WEBHOOK_SECRET"
	EnvReplies            = "WXPUSH_REPLIES"
	EnvFollowerCheck      = "WXPUSH_FOLLOWER_CHECK"
	EnvConsole            = "WXPUSH_CONSOLE"
)

// appEnvUsage ends -h: the settings read from the environment only, and
// the logs (a format: the go-redis limit and interval).
const appEnvUsage = `
Without -config, one app named "default" comes from the environment:
  WXPUSH_APP_ID             its appid
  WXPUSH_APP_SECRET         its appsecret
  WXPUSH_CALLBACK_TOKEN     the callback token (enables /wechat/callback/default)
  WXPUSH_ENCODING_AES_KEY   the EncodingAESKey (43 characters)
  WXPUSH_CALLBACK_MODE      safe (default with a key), compat or plain (default without);
                            safe and compat refuse unencrypted pushes
  WXPUSH_EVENT_WEBHOOK_URL  receives every inbound event and user message (needs the callback token)
  WXPUSH_EVENT_WEBHOOK_SECRET  signs the event webhook (at least 16 characters)
  WXPUSH_REPLIES            passive replies, a JSON array: [{"on":"subscribe","text":"..."},
                            {"keyword":"help","match":"exact|prefix","text":"..."},
                            {"on":"CLICK","event_key":"KEY","text":"..."}]
The apps file (-config) has the same per app (event_webhook_url, event_webhook_secret,
replies), plus rate_limit, rate_burst, quota_reset, token_mode, previous_encoding_aes_key,
status_webhook_url and status_webhook_secret; values other than reply texts may use ${VAR}.

Calls to WeChat honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY, and SSL_CERT_FILE or
SSL_CERT_DIR for the CAs to trust, as any Go program does: to test an unmodified
deployment offline, HTTPS_PROXY=http://<mockwx address> and SSL_CERT_FILE=<mockwx's CA>.

Logs are JSON lines on stderr at -log-level (LOG_LEVEL); durations read as "1.5s". go-redis's
own lines come as {"msg":"go-redis","text":...}, at most %d per %s; the rest are counted
in a {"msg":"go-redis log lines suppressed","suppressed":N} line.
`

// ErrUsage marks configuration errors (exit status 2).
var ErrUsage = errors.New("usage")

// flagValues is what wxpushd's flags parse into; LoadConfig turns it into
// a Config.
type flagValues struct {
	c                                     Config
	keys, configPath, mode, followerCheck string
	consoleOn                             bool
}

// newFlagSet defines wxpushd's flags, each defaulting to the variable it
// names as getenv has it. PrintUsage passes no variables, so -h shows the
// built-in defaults and never a secret from the environment. envErrs holds,
// by flag name, the variables whose value does not parse.
func newFlagSet(getenv func(string) string) (fs *flag.FlagSet, v *flagValues, envErrs map[string]error) {
	env := func(name, def string) string {
		if s := getenv(name); s != "" {
			return s
		}
		return def
	}
	fs = flag.NewFlagSet("wxpushd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // LoadConfig reports errors, PrintUsage the help
	fs.Usage = func() {}
	v = &flagValues{consoleOn: true}
	envErrs = map[string]error{}
	c := &v.c
	keys, configPath, mode, followerCheck := &v.keys, &v.configPath, &v.mode, &v.followerCheck
	fs.StringVar(&c.Addr, "addr", env(EnvAddr, ":8080"), "listen address (env WXPUSH_ADDR)")
	fs.StringVar(&c.RedisURL, "redis-url", env(EnvRedisURL, ""), "Redis URL: redis://, rediss://, redis://...?master_name=M (Sentinel), cluster+redis://... (Cluster); empty: embedded, not durable (env WXPUSH_REDIS_URL)")
	fs.StringVar(&c.WeChatBaseURL, "wechat-base-url", env(EnvWeChatBaseURL, wechat.DefaultBaseURL), "WeChat API base URL (env WXPUSH_WECHAT_BASE_URL)")
	fs.StringVar(keys, "api-keys", env(EnvAPIKeys, ""), "comma-separated bearer API keys (env WXPUSH_API_KEYS)")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", false, "serve the API without authentication (development only)")
	fs.BoolVar(&c.NoWorkers, "no-workers", false, "serve the API only, without sending (other instances send)")
	if s := getenv(EnvConsole); s != "" {
		on, err := strconv.ParseBool(s)
		if err != nil {
			envErrs["console"] = fmt.Errorf("%s %q: must be true or false", EnvConsole, clipName(s))
		} else {
			v.consoleOn = on
		}
	}
	fs.BoolVar(&v.consoleOn, "console", v.consoleOn, "serve the web console at /console (sign-in with an API key); -console=false turns it off (env "+EnvConsole+")")
	fs.StringVar(configPath, "config", env(EnvConfig, ""), "YAML file with apps (env WXPUSH_CONFIG)")
	fs.StringVar(mode, "token-mode", env("WXPUSH_TOKEN_MODE", string(token.ModeStable)), "stable (/cgi-bin/stable_token) or classic (/cgi-bin/token) (env WXPUSH_TOKEN_MODE)")
	intVar := func(p *int, name, envName string, def int, usage string) {
		d := def
		if s := getenv(envName); s != "" {
			if n, err := strconv.Atoi(s); err == nil {
				d = n
			} else {
				envErrs[name] = fmt.Errorf("%s %q: want an integer", envName, clipName(s))
			}
		}
		fs.IntVar(p, name, d, usage+" (env "+envName+")")
	}
	durVar := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		d := def
		if s := getenv(envName); s != "" {
			if x, err := time.ParseDuration(s); err == nil {
				d = x
			} else {
				envErrs[name] = fmt.Errorf("%s %q: want a duration such as 30s or 5m", envName, clipName(s))
			}
		}
		fs.DurationVar(p, name, d, usage+" (env "+envName+")")
	}
	floatVar := func(p *float64, name, envName string, def float64, usage string) {
		d := def
		if s := getenv(envName); s != "" {
			if x, err := strconv.ParseFloat(s, 64); err == nil {
				d = x
			} else {
				envErrs[name] = fmt.Errorf("%s %q: want a number", envName, clipName(s))
			}
		}
		fs.Float64Var(p, name, d, usage+" (env "+envName+")")
	}
	intVar(&c.TokenDailyBudget, "token-daily-budget", "WXPUSH_TOKEN_DAILY_BUDGET", 0, "token calls per app per day across instances; 0: 1000 classic, 10000 stable")
	intVar(&c.Workers, "workers", "WXPUSH_WORKERS", 16, "concurrent sends per instance")
	intVar(&c.RedisWaitReplicas, "redis-wait-replicas", "WXPUSH_REDIS_WAIT_REPLICAS", 0, "acknowledge a message (202) or a callback only once this many replicas have it (WAIT), else 503; 0: replication stays asynchronous, and a failover can lose the last acknowledged writes")
	durVar(&c.RedisWaitTimeout, "redis-wait-timeout", "WXPUSH_REDIS_WAIT_TIMEOUT", time.Second, "how long a write waits for --redis-wait-replicas")
	intVar(&c.Partitions, "partitions", "WXPUSH_PARTITIONS", 1, "queue partitions, each under its own hash tag so a Redis Cluster spreads them over its masters (a multiple of the masters); every instance the same; a changed count is refused at start (README: Changing the partition count)")
	intVar(&c.MaxAttempts, "max-attempts", "WXPUSH_MAX_ATTEMPTS", 8, "send attempts before a message fails with attempts_exhausted")
	durVar(&c.BackoffBase, "backoff-base", "WXPUSH_BACKOFF_BASE", time.Second, "first retry delay bound")
	durVar(&c.BackoffCap, "backoff-cap", "WXPUSH_BACKOFF_CAP", 5*time.Minute, "largest retry delay bound")
	durVar(&c.SendTimeout, "send-timeout", "WXPUSH_SEND_TIMEOUT", 10*time.Second, "timeout of one WeChat call")
	durVar(&c.Visibility, "visibility-timeout", "WXPUSH_VISIBILITY_TIMEOUT", 60*time.Second, "a message unacknowledged this long is reclaimed by another worker")
	durVar(&c.IdempotencyTTL, "idempotency-ttl", "WXPUSH_IDEMPOTENCY_TTL", 24*time.Hour, "how long Idempotency-Key values are remembered")
	durVar(&c.Retention, "retention", "WXPUSH_RETENTION", 7*24*time.Hour, "how long message records are kept")
	durVar(&c.ShutdownTimeout, "shutdown-timeout", "WXPUSH_SHUTDOWN_TIMEOUT", 15*time.Second, "bound on graceful shutdown")
	durVar(&c.PaceDelay, "pace-delay", "WXPUSH_PACE_DELAY", 60*time.Second, "how long 45011 (per-minute limit) pauses the app, all instances")
	durVar(&c.QuotaDelay, "quota-delay", "WXPUSH_QUOTA_DELAY", 5*time.Minute, "while 45009 (daily quota) pauses an app, send one probe this often; negative: no probe (wait for the quota reset or an operator)")
	durVar(&c.AppDelay, "app-delay", "WXPUSH_APP_DELAY", 0, "while an app-level errcode (bad secret, IP whitelist...) pauses an app, send one probe this often; 0: only POST /v1/apps/{app}/resume resumes it")
	durVar(&c.DedupWindow, "dedup-window", "WXPUSH_DEDUP_WINDOW", 10*time.Minute, "WeChat's client_msg_id dedup window: after an attempt whose answer was lost (timeout, reset, 5xx, garbled answer, a worker that died mid-send), a resend begins only until this window less a safety margin (send-timeout + a tenth of the window: 70s of the default 10m) after it, else the message fails as unconfirmed instead of risking a second delivery")
	durVar(&c.WebhookTimeout, "webhook-timeout", "WXPUSH_WEBHOOK_TIMEOUT", 10*time.Second, "timeout of one status webhook delivery")
	durVar(&c.WebhookBackoffBase, "webhook-backoff-base", "WXPUSH_WEBHOOK_BACKOFF_BASE", time.Second, "first status webhook retry delay")
	durVar(&c.WebhookBackoffCap, "webhook-backoff-cap", "WXPUSH_WEBHOOK_BACKOFF_CAP", 10*time.Minute, "largest status webhook retry delay")
	intVar(&c.WebhookMaxAttempts, "webhook-max-attempts", "WXPUSH_WEBHOOK_MAX_ATTEMPTS", 20, "status webhook deliveries before an event is given up")
	durVar(&c.ReadTimeout, "read-timeout", "WXPUSH_READ_TIMEOUT", DefaultReadTimeout, "bound on reading one request, headers and body; a slower client is cut off")
	durVar(&c.WriteTimeout, "write-timeout", "WXPUSH_WRITE_TIMEOUT", DefaultWriteTimeout, "bound on one request from the end of its headers to the end of the answer; at least --read-timeout")
	durVar(&c.IdleTimeout, "idle-timeout", "WXPUSH_IDLE_TIMEOUT", DefaultIdleTimeout, "a keep-alive connection with no request for this long is closed")
	intVar(&c.MaxConns, "max-conns", "WXPUSH_MAX_CONNS", DefaultMaxConns, "connections served at once; more wait to be accepted (lowered to fit the open-file limit)")
	floatVar(&c.RateLimitPerKey, "rate-limit-per-key", "WXPUSH_RATE_LIMIT_PER_KEY", 0, "/v1 requests per second per API key, all instances together; 0: no limit")
	intVar(&c.RateBurstPerKey, "rate-burst-per-key", "WXPUSH_RATE_BURST_PER_KEY", 0, "requests an API key may make at once within --rate-limit-per-key; 0: one second's worth")
	floatVar(&c.RateLimitGlobal, "rate-limit-global", "WXPUSH_RATE_LIMIT_GLOBAL", 0, "/v1 requests per second for the whole service, all keys and instances together; 0: no limit")
	intVar(&c.RateBurstGlobal, "rate-burst-global", "WXPUSH_RATE_BURST_GLOBAL", 0, "requests the service may take at once within --rate-limit-global; 0: one second's worth")
	durVar(&c.CallbackMaxSkew, "callback-max-skew", "WXPUSH_CALLBACK_MAX_SKEW", 5*time.Minute, "WeChat callbacks whose timestamp is further than this from the clock are refused (replay protection)")
	durVar(&c.StoreCheckInterval, "store-check-interval", "WXPUSH_STORE_CHECK_INTERVAL", 5*time.Second, "how often to check that Redis kept its data (the store epoch; also checked on every reconnect): a store that came back empty raises the store-reset alarm")
	fs.StringVar(followerCheck, "follower-check", env(EnvFollowerCheck, "on"), "on: a send to a user known not to follow the account (unsubscribe event, or errcode 43004) fails as not_following without calling WeChat; off: send anyway (env WXPUSH_FOLLOWER_CHECK)")
	fs.StringVar(&c.Instance, "instance", env("WXPUSH_INSTANCE", ""), "this instance's name in the consumer group (env WXPUSH_INSTANCE)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	return fs, v, envErrs
}

// DefaultHealthcheckURL is what `wxpushd -healthcheck` probes without a URL.
const DefaultHealthcheckURL = "http://127.0.0.1:8080/readyz"

// PrintUsage writes wxpushd's help to w: how to run it, then every flag
// with the variable it defaults to and its built-in default, then the
// settings read from the environment only.
func PrintUsage(w io.Writer) {
	fs, _, _ := newFlagSet(func(string) string { return "" })
	fmt.Fprintf(w, usageHead, version.Version, DefaultHealthcheckURL)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, appEnvUsage, logging.DefaultRedisLogLimit, logging.DefaultRedisLogInterval)
}

const usageHead = `wxpushd %s: the WeChat template message push service (HTTP API, Redis queue, workers).

usage:
  wxpushd [flags]             serve; every flag defaults to the environment variable it names
  wxpushd -healthcheck [URL]  probe a running instance instead of serving (default %s):
                              exit 0 on a 2xx answer, 1 otherwise (the container healthcheck)
  wxpushd -version            print the version and exit
  wxpushd -h, --help          print this help and exit

flags:
`

// LoadConfig parses flags whose defaults come from WXPUSH_* variables, and
// the apps: from the YAML file named by -config / WXPUSH_CONFIG, or one app
// "default" from WXPUSH_APP_ID, WXPUSH_APP_SECRET, WXPUSH_CALLBACK_TOKEN,
// WXPUSH_ENCODING_AES_KEY and WXPUSH_CALLBACK_MODE. On -h or --help it
// writes PrintUsage to out and returns an error that wraps flag.ErrHelp
// (and ErrUsage, as every other error). A variable whose value does not
// parse is an error unless its flag is given.
func LoadConfig(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	fs, v, envErrs := newFlagSet(getenv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			PrintUsage(out)
		}
		return Config{}, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var bad []error
	fs.VisitAll(func(f *flag.Flag) { // in flag order: a stable message
		if err := envErrs[f.Name]; err != nil && !given[f.Name] {
			bad = append(bad, err)
		}
	})
	if len(bad) > 0 {
		return Config{}, fmt.Errorf("%w: %w", ErrUsage, errors.Join(bad...))
	}
	c := v.c
	keys, configPath, mode, followerCheck := v.keys, v.configPath, v.mode, v.followerCheck
	consoleOn := v.consoleOn
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	c.TokenMode = token.Mode(mode)
	c.NoConsole = !consoleOn
	switch followerCheck {
	case "on":
	case "off":
		c.NoFollowerCheck = true
	default:
		return Config{}, fmt.Errorf("%w: follower-check %q: must be on or off", ErrUsage, clipName(followerCheck))
	}
	for k := range strings.SplitSeq(keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.APIKeys = append(c.APIKeys, wechat.Secret(k))
		}
	}
	if configPath != "" {
		apps, err := loadApps(configPath, getenv)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		c.Apps = apps
	} else if id := getenv(EnvAppID); id != "" {
		a := AppConfig{
			Name: "default", AppID: id, Secret: wechat.Secret(getenv(EnvAppSecret)),
			CallbackToken: wechat.Secret(getenv(EnvCallbackToken)), EncodingAESKey: wechat.Secret(getenv(EnvEncodingAESKey)),
			CallbackMode:    wechat.Mode(getenv(EnvCallbackMode)),
			EventWebhookURL: getenv(EnvEventWebhookURL), EventWebhookSecret: wechat.Secret(getenv(EnvEventWebhookSecret)),
		}
		if v := getenv(EnvReplies); v != "" {
			dec := json.NewDecoder(strings.NewReader(v))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a.Replies); err != nil {
				return Config{}, fmt.Errorf("%w: %s: a JSON array of reply rules: %v", ErrUsage, EnvReplies, err)
			}
		}
		c.Apps = []AppConfig{a}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return c, nil
}

// EffectiveCallbackMode is the mode a's pushes must come in: CallbackMode,
// or safe when an EncodingAESKey is set and plain otherwise.
func (a AppConfig) EffectiveCallbackMode() wechat.Mode {
	switch {
	case a.CallbackMode != "":
		return a.CallbackMode
	case a.EncodingAESKey != "":
		return wechat.ModeSafe
	}
	return wechat.ModePlain
}

// appsFile is the YAML layout of WXPUSH_CONFIG. String values may hold
// ${VAR} references to environment variables ($$ is a literal $).
type appsFile struct {
	Apps []appEntry `yaml:"apps"`
}

type appEntry struct {
	Name                   string   `yaml:"name"`
	AppID                  string   `yaml:"appid"`
	Secret                 string   `yaml:"secret"`
	CallbackToken          string   `yaml:"callback_token"`
	EncodingAESKey         string   `yaml:"encoding_aes_key"`
	PreviousEncodingAESKey string   `yaml:"previous_encoding_aes_key"`
	CallbackMode           string   `yaml:"callback_mode"`
	RateLimit              *float64 `yaml:"rate_limit"`
	RateBurst              *int     `yaml:"rate_burst"`
	QuotaReset             string   `yaml:"quota_reset"`
	TokenMode              string   `yaml:"token_mode"`
	StatusWebhookURL       string   `yaml:"status_webhook_url"`
	StatusWebhookSecret    string   `yaml:"status_webhook_secret"`
	EventWebhookURL        string   `yaml:"event_webhook_url"`
	EventWebhookSecret     string   `yaml:"event_webhook_secret"`
	// Replies are taken verbatim: no ${VAR} in a reply's text.
	Replies apps.Replies `yaml:"replies"`
}

func loadApps(path string, getenv func(string) string) ([]AppConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apps file: %w", err)
	}
	var f appsFile
	if err := yaml.UnmarshalWithOptions(bytes.TrimSpace(data), &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("apps file %s: %s", path, yaml.FormatError(err, false, true))
	}
	var errs []error
	apps := make([]AppConfig, 0, len(f.Apps))
	for i, a := range f.Apps {
		expand := func(field, v string) string {
			out, err := expandEnv(v, getenv)
			if err != nil {
				errs = append(errs, fmt.Errorf("apps[%d].%s: %w", i, field, err))
			}
			return out
		}
		ac := AppConfig{
			Name: expand("name", a.Name), AppID: expand("appid", a.AppID), Secret: wechat.Secret(expand("secret", a.Secret)),
			CallbackToken: wechat.Secret(expand("callback_token", a.CallbackToken)), EncodingAESKey: wechat.Secret(expand("encoding_aes_key", a.EncodingAESKey)),
			PreviousEncodingAESKey: wechat.Secret(expand("previous_encoding_aes_key", a.PreviousEncodingAESKey)),
			CallbackMode:           wechat.Mode(expand("callback_mode", a.CallbackMode)),
			QuotaReset:             expand("quota_reset", a.QuotaReset), TokenMode: token.Mode(expand("token_mode", a.TokenMode)),
			StatusWebhookURL: expand("status_webhook_url", a.StatusWebhookURL), StatusWebhookSecret: wechat.Secret(expand("status_webhook_secret", a.StatusWebhookSecret)),
			EventWebhookURL: expand("event_webhook_url", a.EventWebhookURL), EventWebhookSecret: wechat.Secret(expand("event_webhook_secret", a.EventWebhookSecret)),
			Replies: a.Replies,
		}
		if a.RateLimit != nil {
			if *a.RateLimit <= 0 {
				errs = append(errs, fmt.Errorf("apps[%d].rate_limit: must be > 0 (omit it for no limit), got %v", i, *a.RateLimit))
			}
			ac.RateLimit = *a.RateLimit
		}
		if a.RateBurst != nil {
			if *a.RateBurst < 1 {
				errs = append(errs, fmt.Errorf("apps[%d].rate_burst: must be >= 1, got %d", i, *a.RateBurst))
			}
			ac.RateBurst = *a.RateBurst
		}
		apps = append(apps, ac)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("apps file %s: %w", path, err)
	}
	return apps, nil
}

// expandEnv replaces ${NAME} with the value of the environment variable
// NAME and $$ with $; any other $ stays as it is. A variable that is unset
// (or empty) is an error naming it; the error never holds a value.
func expandEnv(s string, getenv func(string) string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New("unterminated ${ (write $$ for a literal $)")
			}
			name := s[i+2 : i+2+end]
			if !envNamePattern.MatchString(name) {
				return "", fmt.Errorf("${%s}: not a valid environment variable name", clipName(name))
			}
			v := getenv(name)
			if v == "" {
				return "", fmt.Errorf("environment variable %s is not set (referenced as ${%s})", name, name)
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func clipName(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
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
		if strings.ContainsFunc(k.Reveal(), func(r rune) bool { return r <= ' ' || r > '~' }) {
			errs = append(errs, fmt.Errorf("API key %d holds a space, a control or a non-ASCII character: no Bearer header could carry it", i+1))
		}
	}
	if len(c.Apps) == 0 {
		errs = append(errs, errors.New("no apps: set WXPUSH_APP_ID and WXPUSH_APP_SECRET, or WXPUSH_CONFIG"))
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		field := func(name string) string { return fmt.Sprintf("apps[%d].%s", i, name) }
		switch {
		case !appNamePattern.MatchString(a.Name):
			errs = append(errs, fmt.Errorf("%s %q: 1-32 of a-z 0-9 _ -, starting with a letter or digit", field("name"), clipName(a.Name)))
		case seen[a.Name]:
			errs = append(errs, fmt.Errorf("%s %q is configured twice", field("name"), a.Name))
		}
		seen[a.Name] = true
		if a.AppID == "" {
			errs = append(errs, fmt.Errorf("%s: required", field("appid")))
		}
		if a.Secret == "" {
			errs = append(errs, fmt.Errorf("%s: required", field("secret")))
		}
		for _, k := range []struct {
			name string
			v    wechat.Secret
		}{{"encoding_aes_key", a.EncodingAESKey}, {"previous_encoding_aes_key", a.PreviousEncodingAESKey}} {
			if k.v != "" {
				if _, err := wechat.DecodeAESKey(k.v.Reveal()); err != nil {
					errs = append(errs, fmt.Errorf("%s: must be 43 base64 characters", field(k.name)))
				}
			}
		}
		if a.EncodingAESKey != "" && a.CallbackToken == "" {
			errs = append(errs, fmt.Errorf("%s: needs a callback_token", field("encoding_aes_key")))
		}
		if a.PreviousEncodingAESKey != "" && a.EncodingAESKey == "" {
			errs = append(errs, fmt.Errorf("%s: needs an encoding_aes_key", field("previous_encoding_aes_key")))
		}
		switch a.CallbackMode {
		case "", wechat.ModePlain:
		case wechat.ModeSafe, wechat.ModeCompat:
			if a.EncodingAESKey == "" {
				errs = append(errs, fmt.Errorf("%s %s: needs an encoding_aes_key", field("callback_mode"), a.CallbackMode))
			}
		default:
			errs = append(errs, fmt.Errorf("%s %q: must be safe, compat or plain", field("callback_mode"), clipName(string(a.CallbackMode))))
		}
		if a.RateLimit < 0 || math.IsNaN(a.RateLimit) || math.IsInf(a.RateLimit, 0) {
			errs = append(errs, fmt.Errorf("%s: must be > 0 (or 0 for no limit)", field("rate_limit")))
		}
		if a.RateBurst < 0 {
			errs = append(errs, fmt.Errorf("%s: must be >= 1", field("rate_burst")))
		}
		if _, err := pacing.ParseReset(a.QuotaReset); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field("quota_reset"), err))
		}
		if a.TokenMode != "" && a.TokenMode != token.ModeStable && a.TokenMode != token.ModeClassic {
			errs = append(errs, fmt.Errorf("%s %q: must be stable or classic", field("token_mode"), clipName(string(a.TokenMode))))
		}
		errs = append(errs, validateWebhook(field, "status", a.StatusWebhookURL, a.StatusWebhookSecret)...)
		errs = append(errs, validateWebhook(field, "event", a.EventWebhookURL, a.EventWebhookSecret)...)
		if a.EventWebhookURL != "" && a.CallbackToken == "" {
			errs = append(errs, fmt.Errorf("%s: needs a callback_token (pushes come to the callback endpoint)", field("event_webhook_url")))
		}
		if len(a.Replies) > 0 && a.CallbackToken == "" {
			errs = append(errs, fmt.Errorf("%s: need a callback_token (replies answer pushes to the callback endpoint)", field("replies")))
		}
		if err := a.Replies.Validate(); err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("apps[%d].%s", i, line))
			}
		}
	}
	if c.TokenMode != token.ModeStable && c.TokenMode != token.ModeClassic && c.TokenMode != "" {
		errs = append(errs, fmt.Errorf("token mode %q: must be stable or classic", c.TokenMode))
	}
	if c.RedisWaitReplicas < 0 || c.RedisWaitTimeout < 0 {
		errs = append(errs, errors.New("redis-wait-replicas and redis-wait-timeout must not be negative"))
	}
	if c.RedisWaitReplicas > 0 && c.RedisURL == "" {
		errs = append(errs, errors.New("redis-wait-replicas needs a Redis (redis-url): the embedded store has no replicas"))
	}
	if c.Partitions < 0 || c.Partitions > store.MaxPartitions {
		errs = append(errs, fmt.Errorf("partitions must be 1 to %d (0: 1)", store.MaxPartitions))
	}
	if c.Workers < 0 || c.MaxAttempts < 0 || c.TokenDailyBudget < 0 || c.WebhookMaxAttempts < 0 {
		errs = append(errs, errors.New("workers, max-attempts, token-daily-budget and webhook-max-attempts must not be negative"))
	}
	if c.StoreCheckInterval < 0 {
		errs = append(errs, errors.New("store-check-interval must not be negative"))
	}
	if c.DedupWindow < 0 {
		errs = append(errs, fmt.Errorf("dedup-window %s: must not be negative", c.DedupWindow))
	} else if c.DedupWindow > 0 {
		sendTimeout := c.SendTimeout
		if sendTimeout <= 0 {
			sendTimeout = 10 * time.Second
		}
		if margin := worker.DedupMargin(c.DedupWindow, sendTimeout); c.DedupWindow <= margin {
			errs = append(errs, fmt.Errorf("dedup-window %s: must be longer than its safety margin %s (send-timeout %s plus a tenth of the window), or no resend could begin inside it", c.DedupWindow, margin, sendTimeout))
		}
	}
	errs = append(errs, c.validateHTTP()...)
	if c.RedisURL != "" {
		if err := redisurl.Check(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("redis-url (%s): %w", EnvRedisURL, err))
		}
	}
	if c.LogLevel != "" {
		if _, err := logging.ParseLevel(c.LogLevel); err != nil {
			errs = append(errs, fmt.Errorf("log-level (LOG_LEVEL): %w", err))
		}
	}
	if c.WeChatBaseURL != "" {
		if _, err := wechat.NewClient(c.WeChatBaseURL, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validateWebhook checks a webhook's URL and secret; kind is "status" or
// "event". Messages name the setting, never the secret or the URL.
func validateWebhook(field func(string) string, kind, rawURL string, secret wechat.Secret) []error {
	var errs []error
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: must be an absolute http(s) URL", field(kind+"_webhook_url")))
		}
		if len(secret.Reveal()) < 16 {
			errs = append(errs, fmt.Errorf("%s: required with %s_webhook_url, at least 16 characters", field(kind+"_webhook_secret"), kind))
		}
	} else if secret != "" {
		errs = append(errs, fmt.Errorf("%s: set without %s_webhook_url", field(kind+"_webhook_secret"), kind))
	}
	return errs
}

// HTTP server defaults (Config.ReadTimeout, WriteTimeout, IdleTimeout,
// MaxConns).
const (
	DefaultReadTimeout  = 30 * time.Second
	DefaultWriteTimeout = 60 * time.Second
	DefaultIdleTimeout  = 120 * time.Second
	DefaultMaxConns     = 4096
)

// validateHTTP checks the server bounds and the inbound rate limits.
func (c Config) validateHTTP() []error {
	var errs []error
	if c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.MaxConns < 0 {
		errs = append(errs, errors.New("read-timeout, write-timeout, idle-timeout and max-conns must not be negative (0: the default)"))
	}
	read, write := cmp.Or(c.ReadTimeout, DefaultReadTimeout), cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	if write < read {
		errs = append(errs, fmt.Errorf("write-timeout %s is shorter than read-timeout %s: the write deadline runs while the body is read", write, read))
	}
	for _, l := range []struct {
		name  string
		rate  float64
		burst int
	}{{"rate-limit-per-key", c.RateLimitPerKey, c.RateBurstPerKey}, {"rate-limit-global", c.RateLimitGlobal, c.RateBurstGlobal}} {
		if l.rate < 0 || math.IsNaN(l.rate) || math.IsInf(l.rate, 0) {
			errs = append(errs, fmt.Errorf("%s: must be > 0 requests per second (or 0 for no limit)", l.name))
		}
		if l.burst < 0 {
			errs = append(errs, fmt.Errorf("%s burst: must be >= 1 (or 0 for one second's worth)", l.name))
		}
	}
	return errs
}

// build parses a's settings into the apps.App every package takes; Validate
// has checked them, so an error here is a setting Validate missed.
func (a AppConfig) build(followerCheck bool) (*apps.App, error) {
	reset, err := pacing.ParseReset(a.QuotaReset)
	if err != nil {
		return nil, fmt.Errorf("app %s: quota_reset: %w", a.Name, err)
	}
	out := &apps.App{
		Name: a.Name, AppID: a.AppID, Secret: a.Secret, TokenMode: string(a.TokenMode),
		Rate: pacing.Rate{PerSecond: a.RateLimit, Burst: a.RateBurst}, Reset: reset,
		StatusWebhook: apps.Webhook{URL: a.StatusWebhookURL, Secret: a.StatusWebhookSecret},
		EventWebhook:  apps.Webhook{URL: a.EventWebhookURL, Secret: a.EventWebhookSecret},
		Replies:       a.Replies, FollowerCheck: followerCheck,
	}
	if a.CallbackToken != "" {
		cr, err := wechat.NewCrypter(wechat.CrypterConfig{
			Token: a.CallbackToken.Reveal(), AppID: a.AppID,
			EncodingAESKey: a.EncodingAESKey.Reveal(), PreviousEncodingAESKey: a.PreviousEncodingAESKey.Reveal(),
		})
		if err != nil {
			return nil, fmt.Errorf("app %s: callback settings: %w", a.Name, err)
		}
		out.Crypter, out.CallbackMode = cr, a.EffectiveCallbackMode()
	}
	return out, nil
}
