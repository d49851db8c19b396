package mockwx

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/wxpush/wxpush/internal/wechat"
)

// Config is everything mockwx is programmed with at start: the apps it
// serves, global settings, and fault rules to preload. It is what the YAML
// file named by MOCKWX_CONFIG holds.
type Config struct {
	// NoDemoApp leaves the built-in demo app out; by default it is served
	// in addition to Apps.
	NoDemoApp bool     `yaml:"no_demo_app,omitempty" json:"no_demo_app,omitempty"`
	Settings  Settings `yaml:"settings,omitempty" json:"settings"`
	Apps      []App    `yaml:"apps,omitempty" json:"apps"`
	Rules     []Rule   `yaml:"rules,omitempty" json:"rules,omitempty"`

	demo    App  // the demo app as ApplyEnv adjusted it
	demoSet bool // ApplyEnv ran
}

// Settings are mock-wide behaviours. Zero values take the defaults shown.
type Settings struct {
	// TokenGraceSeconds: how long a superseded /cgi-bin/token token stays
	// valid (default 300, WeChat's ~5 minutes).
	TokenGraceSeconds int `yaml:"token_grace_seconds,omitempty" json:"token_grace_seconds,omitempty"`
	// StableHandoverSeconds: the last part of a stable token's life in which
	// a call mints its successor, both staying valid (default 300).
	StableHandoverSeconds int `yaml:"stable_handover_seconds,omitempty" json:"stable_handover_seconds,omitempty"`
	// DedupWindowSeconds: how long (appid, openid, client_msg_id) dedups a
	// send (default 600, WeChat's 10 minutes).
	DedupWindowSeconds int `yaml:"dedup_window_seconds,omitempty" json:"dedup_window_seconds,omitempty"`
	// CallbackDelayMS: delay between an accepted send and its
	// TEMPLATESENDJOBFINISH push (default 50).
	CallbackDelayMS int `yaml:"callback_delay_ms,omitempty" json:"callback_delay_ms,omitempty"`
	// CallbackTimeoutMS: how long a push waits for the receiver (default 5000).
	CallbackTimeoutMS int `yaml:"callback_timeout_ms,omitempty" json:"callback_timeout_ms,omitempty"`
	// CallbackRetries: retries of a push that got no answer in time
	// (default 2: 3 tries in all, as WeChat).
	CallbackRetries int `yaml:"callback_retries,omitempty" json:"callback_retries,omitempty"`
	// CallbackWorkers: concurrent pushes (default 32).
	CallbackWorkers int `yaml:"callback_workers,omitempty" json:"callback_workers,omitempty"`
	// LedgerCapacity: sends the ledger holds before evicting the oldest
	// (default 10,000,000).
	LedgerCapacity int `yaml:"ledger_capacity,omitempty" json:"ledger_capacity,omitempty"`
	// LedgerDataCapacity: most recent sends whose data object is kept
	// (default 100,000).
	LedgerDataCapacity int `yaml:"ledger_data_capacity,omitempty" json:"ledger_data_capacity,omitempty"`
	// UserListPageSize: openids per page of /cgi-bin/user/get (default
	// 10000, WeChat's); smaller values make paging testable.
	UserListPageSize int `yaml:"user_list_page_size,omitempty" json:"user_list_page_size,omitempty"`
	// CallbackIPs: what /cgi-bin/getcallbackip answers (default 127.0.0.1).
	CallbackIPs []string `yaml:"callback_ips,omitempty" json:"callback_ips,omitempty"`
}

// App is one Official Account the mock serves.
type App struct {
	AppID  string `yaml:"appid" json:"appid"`
	Secret string `yaml:"secret" json:"secret"`
	// OriginalID is the account's original id (gh_...), the ToUserName of
	// its pushes; derived from AppID when empty.
	OriginalID string `yaml:"original_id,omitempty" json:"original_id"`

	CallbackURL    string `yaml:"callback_url,omitempty" json:"callback_url"`
	CallbackToken  string `yaml:"callback_token,omitempty" json:"callback_token"`
	EncodingAESKey string `yaml:"encoding_aes_key,omitempty" json:"encoding_aes_key"`
	// CallbackMode is plain, compat or safe (default plain).
	CallbackMode wechat.Mode `yaml:"callback_mode,omitempty" json:"callback_mode"`

	// TokenExpiresIn is a token's lifetime in seconds (default 7200); short
	// lifetimes make expiry testable.
	TokenExpiresIn int `yaml:"token_expires_in,omitempty" json:"token_expires_in"`
	// Daily budgets (reset at midnight Asia/Shanghai) and the monthly
	// clear_quota budget; defaults are WeChat's: 2000, 500000, 100000, 10.
	TokenDailyLimit        int `yaml:"token_daily_limit,omitempty" json:"token_daily_limit"`
	StableTokenDailyLimit  int `yaml:"stable_token_daily_limit,omitempty" json:"stable_token_daily_limit"`
	TemplateDailyLimit     int `yaml:"template_daily_limit,omitempty" json:"template_daily_limit"`
	ClearQuotaMonthlyLimit int `yaml:"clear_quota_monthly_limit,omitempty" json:"clear_quota_monthly_limit"`
	// ForceRefreshDailyLimit and ForceRefreshSpacingSeconds bound stable
	// token force refreshes (defaults 20 and 30).
	ForceRefreshDailyLimit     int `yaml:"force_refresh_daily_limit,omitempty" json:"force_refresh_daily_limit"`
	ForceRefreshSpacingSeconds int `yaml:"force_refresh_spacing_seconds,omitempty" json:"force_refresh_spacing_seconds"`

	Templates    []Template    `yaml:"templates,omitempty" json:"templates"`
	Followers    Followers     `yaml:"followers,omitempty" json:"followers"`
	MiniPrograms []MiniProgram `yaml:"mini_programs,omitempty" json:"mini_programs,omitempty"`
}

// Template is a template the app owns, with its typed fields.
type Template struct {
	ID     string  `yaml:"id" json:"id"`
	Title  string  `yaml:"title,omitempty" json:"title,omitempty"`
	Fields []Field `yaml:"fields" json:"fields"`
}

// Followers decides who follows the app. By default every well-formed
// openid follows, except those listed in NotFollowing (sends answer 43004);
// with Only set, exactly those openids follow. Blocked users follow but
// refuse messages: sends are accepted and the delivery report says
// "failed:user block".
type Followers struct {
	Only         []string `yaml:"only,omitempty" json:"only,omitempty"`
	NotFollowing []string `yaml:"not_following,omitempty" json:"not_following,omitempty"`
	Blocked      []string `yaml:"blocked,omitempty" json:"blocked,omitempty"`
}

// MiniProgram is a mini program bound to the app, with its released pages.
type MiniProgram struct {
	AppID string   `yaml:"appid" json:"appid"`
	Pages []string `yaml:"pages" json:"pages"`
}

// The demo app, served unless Config.NoDemoApp. Its values are printed at
// startup and can be changed by the MOCKWX_* environment variables.
const (
	DemoAppID          = "wx6d6f636b77786170"
	DemoAppSecret      = "6d6f636b7778646560736563726574aa"
	DemoOriginalID     = "gh_6d6f636b7778"
	DemoCallbackToken  = "mockwxdemotoken"
	DemoEncodingAESKey = "bW9ja3d4LWRlbW8tZW5jb2RpbmctYWVzLWtleS0wMDE"
	DemoMiniProgramID  = "wx6d696e6970726f67"
	// Openids the demo app's followers list singles out.
	DemoNotFollowing = "oNotFollowing-demo-000000000"
	DemoBlocked      = "oBlockedUser-demo-0000000000"
)

// DemoApp returns the built-in demo app: typed category templates, a
// legacy free-text template, a mini program, and two openids that show
// 43004 and "failed:user block".
func DemoApp() App {
	return App{
		AppID:          DemoAppID,
		Secret:         DemoAppSecret,
		OriginalID:     DemoOriginalID,
		CallbackToken:  DemoCallbackToken,
		EncodingAESKey: DemoEncodingAESKey,
		CallbackMode:   wechat.ModePlain,
		Templates: []Template{
			{ID: "order_shipped", Title: "订单发货通知", Fields: []Field{
				{Key: "thing1", Type: FieldThing}, {Key: "character_string2", Type: FieldCharacterString},
				{Key: "time3", Type: FieldTime}, {Key: "phrase4", Type: FieldPhrase},
			}},
			{ID: "payment_received", Title: "收款成功通知", Fields: []Field{
				{Key: "amount1", Type: FieldAmount}, {Key: "time2", Type: FieldTime}, {Key: "thing3", Type: FieldThing},
			}},
			{ID: "appointment_reminder", Title: "预约提醒", Fields: []Field{
				{Key: "name1", Type: FieldName}, {Key: "date2", Type: FieldDate},
				{Key: "phone_number3", Type: FieldPhoneNumber}, {Key: "const4", Type: FieldConst, Values: []string{"已确认", "已取消"}},
			}},
			{ID: "notice", Title: "通用通知 (legacy)", Fields: []Field{
				{Key: "keyword1", Type: FieldText}, {Key: "keyword2", Type: FieldText},
			}},
		},
		Followers:    Followers{NotFollowing: []string{DemoNotFollowing}, Blocked: []string{DemoBlocked}},
		MiniPrograms: []MiniProgram{{AppID: DemoMiniProgramID, Pages: []string{"pages/index/index", "pages/order/detail"}}},
	}
}

// Env names the environment variables that adjust the demo app and the
// program. Getenv is os.Getenv in the program and a map in tests.
const (
	EnvConfig         = "MOCKWX_CONFIG"
	EnvAddr           = "MOCKWX_ADDR"
	EnvSeed           = "MOCKWX_SEED"
	EnvAdminToken     = "MOCKWX_ADMIN_TOKEN"
	EnvAppID          = "MOCKWX_APP_ID"
	EnvAppSecret      = "MOCKWX_APP_SECRET"
	EnvCallbackURL    = "MOCKWX_CALLBACK_URL"
	EnvCallbackToken  = "MOCKWX_CALLBACK_TOKEN"
	EnvEncodingAESKey = "MOCKWX_ENCODING_AES_KEY"
	EnvCallbackMode   = "MOCKWX_CALLBACK_MODE"
	EnvCACert         = "MOCKWX_CA_CERT"
	EnvCAKey          = "MOCKWX_CA_KEY"
)

// LoadConfig reads a YAML config file strictly: unknown keys are errors
// with their line and column.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("mockwx config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("mockwx config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML (or JSON) config strictly and validates it.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalWithOptions(data, &cfg, yaml.Strict()); err != nil {
			return Config{}, errors.New(yaml.FormatError(err, false, true))
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ApplyEnv returns cfg with the demo app adjusted by the MOCKWX_* variables
// that are set (MOCKWX_APP_ID, MOCKWX_APP_SECRET, MOCKWX_CALLBACK_URL,
// MOCKWX_CALLBACK_TOKEN, MOCKWX_ENCODING_AES_KEY, MOCKWX_CALLBACK_MODE).
// getenv is os.Getenv in the program.
func ApplyEnv(cfg Config, getenv func(string) string) Config {
	cfg.demo = DemoApp()
	set := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set(&cfg.demo.AppID, EnvAppID)
	set(&cfg.demo.Secret, EnvAppSecret)
	set(&cfg.demo.CallbackURL, EnvCallbackURL)
	set(&cfg.demo.CallbackToken, EnvCallbackToken)
	set(&cfg.demo.EncodingAESKey, EnvEncodingAESKey)
	if v := getenv(EnvCallbackMode); v != "" {
		cfg.demo.CallbackMode = wechat.Mode(v)
	}
	cfg.demoSet = true
	return cfg
}

// AllApps returns the apps the mock serves: the demo app (as adjusted by
// ApplyEnv) first unless NoDemoApp, then Apps.
func (c Config) AllApps() []App {
	var apps []App
	if !c.NoDemoApp {
		if c.demoSet {
			apps = append(apps, c.demo)
		} else {
			apps = append(apps, DemoApp())
		}
	}
	return append(apps, c.Apps...)
}

var (
	appIDPattern  = regexp.MustCompile(`^wx[0-9a-zA-Z]{8,32}$`)
	openIDPattern = regexp.MustCompile(`^[0-9A-Za-z_-]{6,64}$`)
)

// wellFormedOpenID reports whether s looks like an openid; others get 40003.
func wellFormedOpenID(s string) bool { return openIDPattern.MatchString(s) }

// Validate checks the config and names the first problems it finds by
// their path (apps[1].templates[0].fields[2].type: ...).
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	s := c.Settings
	for _, f := range []namedInt{
		{"token_grace_seconds", s.TokenGraceSeconds}, {"stable_handover_seconds", s.StableHandoverSeconds},
		{"dedup_window_seconds", s.DedupWindowSeconds}, {"callback_delay_ms", s.CallbackDelayMS},
		{"callback_timeout_ms", s.CallbackTimeoutMS}, {"callback_retries", s.CallbackRetries},
		{"callback_workers", s.CallbackWorkers}, {"ledger_capacity", s.LedgerCapacity}, {"ledger_data_capacity", s.LedgerDataCapacity},
		{"user_list_page_size", s.UserListPageSize},
	} {
		if f.value < 0 {
			add("settings."+f.name, "must not be negative")
		}
	}
	seen := map[string]bool{}
	first := 0 // index in AllApps of the first file app
	if !c.NoDemoApp {
		first = 1
	}
	for i, a := range c.AllApps() {
		p := fmt.Sprintf("apps[%d]", i-first)
		if i < first {
			p = "demo app (MOCKWX_* variables)"
		}
		switch {
		case a.AppID == "":
			add(p+".appid", "required")
		case !appIDPattern.MatchString(a.AppID):
			add(p+".appid", "%q must look like wx followed by 8-32 letters or digits", a.AppID)
		case seen[a.AppID]:
			add(p+".appid", "%q is configured twice", a.AppID)
		}
		seen[a.AppID] = true
		if a.Secret == "" {
			add(p+".secret", "required")
		}
		if _, err := wechat.ParseMode(string(a.CallbackMode)); err != nil {
			add(p+".callback_mode", "%q must be plain, compat or safe", a.CallbackMode)
		}
		if a.CallbackURL != "" {
			if !strings.HasPrefix(a.CallbackURL, "http://") && !strings.HasPrefix(a.CallbackURL, "https://") {
				add(p+".callback_url", "must be an http(s) URL")
			}
			if a.CallbackToken == "" {
				add(p+".callback_token", "required with a callback_url")
			}
		}
		if a.EncodingAESKey != "" {
			if _, err := wechat.DecodeAESKey(a.EncodingAESKey); err != nil {
				add(p+".encoding_aes_key", "must be 43 base64 characters")
			}
		} else if a.CallbackURL != "" && a.CallbackMode != "" && a.CallbackMode != wechat.ModePlain {
			add(p+".encoding_aes_key", "required in %s mode", a.CallbackMode)
		}
		for _, f := range []namedInt{
			{"token_expires_in", a.TokenExpiresIn}, {"token_daily_limit", a.TokenDailyLimit},
			{"stable_token_daily_limit", a.StableTokenDailyLimit}, {"template_daily_limit", a.TemplateDailyLimit},
			{"clear_quota_monthly_limit", a.ClearQuotaMonthlyLimit}, {"force_refresh_daily_limit", a.ForceRefreshDailyLimit},
			{"force_refresh_spacing_seconds", a.ForceRefreshSpacingSeconds},
		} {
			if f.value < 0 {
				add(p+"."+f.name, "must not be negative")
			}
		}
		tids := map[string]bool{}
		for j, t := range a.Templates {
			tp := fmt.Sprintf("%s.templates[%d]", p, j)
			if t.ID == "" {
				add(tp+".id", "required")
			} else if tids[t.ID] {
				add(tp+".id", "%q is configured twice", t.ID)
			}
			tids[t.ID] = true
			keys := map[string]bool{}
			for k, f := range t.Fields {
				fp := fmt.Sprintf("%s.fields[%d]", tp, k)
				if f.Key == "" {
					add(fp+".key", "required")
				} else if keys[f.Key] {
					add(fp+".key", "%q is configured twice", f.Key)
				}
				keys[f.Key] = true
				if !f.Type.Valid() {
					add(fp+".type", "%q is not a field type (thing, number, letter, symbol, character_string, time, date, amount, phone_number, car_number, name, phrase, const, text)", f.Type)
				}
			}
		}
		for _, list := range [][]string{a.Followers.Only, a.Followers.NotFollowing, a.Followers.Blocked} {
			for _, o := range list {
				if !wellFormedOpenID(o) {
					add(p+".followers", "%q is not a well-formed openid (6-64 of A-Z a-z 0-9 _ -)", o)
				}
			}
		}
		for j, mp := range a.MiniPrograms {
			if mp.AppID == "" {
				add(fmt.Sprintf("%s.mini_programs[%d].appid", p, j), "required")
			}
		}
	}
	for i, r := range c.Rules {
		if err := r.Validate(); err != nil {
			add(fmt.Sprintf("rules[%d]", i), "%v", err)
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero settings with their defaults.
func (s Settings) withDefaults() Settings {
	def := defaultInt
	def(&s.TokenGraceSeconds, 300)
	def(&s.StableHandoverSeconds, 300)
	def(&s.DedupWindowSeconds, 600)
	def(&s.CallbackDelayMS, 50)
	def(&s.CallbackTimeoutMS, 5000)
	def(&s.CallbackRetries, 2)
	def(&s.CallbackWorkers, 32)
	def(&s.LedgerCapacity, 10_000_000)
	def(&s.LedgerDataCapacity, 100_000)
	def(&s.UserListPageSize, 10_000)
	if len(s.CallbackIPs) == 0 {
		s.CallbackIPs = []string{"127.0.0.1"}
	}
	return s
}

// withDefaults fills the zero limits of an app with WeChat's values.
func (a App) withDefaults() App {
	def := defaultInt
	def(&a.TokenExpiresIn, 7200)
	def(&a.TokenDailyLimit, 2000)
	def(&a.StableTokenDailyLimit, 500_000)
	def(&a.TemplateDailyLimit, 100_000)
	def(&a.ClearQuotaMonthlyLimit, 10)
	def(&a.ForceRefreshDailyLimit, 20)
	def(&a.ForceRefreshSpacingSeconds, 30)
	if a.CallbackMode == "" {
		a.CallbackMode = wechat.ModePlain
	}
	if a.OriginalID == "" {
		a.OriginalID = "gh_" + strings.ToLower(a.AppID[2:min(len(a.AppID), 14)])
	}
	a.Templates = slices.Clone(a.Templates)
	return a
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// namedInt is a setting's name and value, checked in a fixed order so that
// errors read the same on every run.
type namedInt struct {
	name  string
	value int
}

// defaultInt sets *v to d when it is zero.
func defaultInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}
