package scenarios

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/wxpush/wxpush/mockwx"
)

// Scenario is one declarative load run: the stack to start, what the mock
// does (its apps, fault rules and a timeline of actions), the load to
// offer, and the expectations that decide whether the run passed.
type Scenario struct {
	// Name identifies the scenario (lowercase letters, digits and dashes).
	Name string `yaml:"name" json:"name" jsonschema:"pattern=^[a-z0-9][a-z0-9-]*$"`
	// Description says in a sentence or two what the run shows.
	Description string `yaml:"description" json:"description"`
	// Seed makes the mock's and the load's random choices reproducible
	// (default 1).
	Seed int64 `yaml:"seed,omitempty" json:"seed,omitempty"`
	// Stack is the wxpushd side of the embedded stack.
	Stack Stack `yaml:"stack,omitempty" json:"stack,omitzero"`
	// Mock programs mockwx.
	Mock Mock `yaml:"mock,omitempty" json:"mock,omitzero"`
	// Load is what the generator offers.
	Load Load `yaml:"load" json:"load"`
	// DrainTimeout bounds the wait, after the attack, for every accepted
	// message to reach a final outcome (default 60s).
	DrainTimeout Duration `yaml:"drain_timeout,omitempty" json:"drain_timeout,omitzero"`
	// Expect lists the expectations over summary.json fields; the run
	// passes when all hold.
	Expect []Expectation `yaml:"expect" json:"expect"`
}

// Stack configures the wxpushd instances of the embedded stack and its
// Redis. Zero values take wxpushd's defaults. In remote mode only
// Instances is informative; the rest is the deployment's business.
type Stack struct {
	// Instances is the number of wxpushd instances sharing one Redis
	// (default 1, at most 8).
	Instances int `yaml:"instances,omitempty" json:"instances,omitempty" jsonschema:"minimum=1,maximum=8"`
	// Redis is the embedded stack's Redis: empty for one Redis (wxload's
	// --redis chooses which), or RedisCluster for a private Redis Cluster
	// of 3 masters + 3 replicas (redis-server processes; --redis cluster
	// asks the same of any scenario). The container stack refuses it.
	Redis string `yaml:"redis,omitempty" json:"redis,omitempty" jsonschema:"enum=cluster"`
	// Partitions is wxpushd's --partitions: the queue split into this
	// many partitions, each under its own hash tag, so that a cluster
	// spreads them over its masters (at most 1024; default 1 on one
	// Redis, 6 on the cluster: two per master).
	Partitions int `yaml:"partitions,omitempty" json:"partitions,omitempty" jsonschema:"minimum=1,maximum=1024"`
	// Workers is the concurrent sends per instance.
	Workers int `yaml:"workers,omitempty" json:"workers,omitempty" jsonschema:"minimum=1"`
	// TokenMode is stable (default) or classic.
	TokenMode string `yaml:"token_mode,omitempty" json:"token_mode,omitempty" jsonschema:"enum=stable,enum=classic"`
	// MaxAttempts per message.
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty" jsonschema:"minimum=1"`
	// BackoffBase and BackoffCap shape the retry backoff (full jitter).
	BackoffBase Duration `yaml:"backoff_base,omitempty" json:"backoff_base,omitzero"`
	BackoffCap  Duration `yaml:"backoff_cap,omitempty" json:"backoff_cap,omitzero"`
	// SendTimeout bounds one WeChat call.
	SendTimeout Duration `yaml:"send_timeout,omitempty" json:"send_timeout,omitzero"`
	// Visibility is how long a message a worker took stays its own before
	// another instance may reclaim it.
	Visibility Duration `yaml:"visibility,omitempty" json:"visibility,omitzero"`
	// PaceDelay is the wait after 45011; QuotaDelay the re-check interval
	// after 45009.
	PaceDelay  Duration `yaml:"pace_delay,omitempty" json:"pace_delay,omitzero"`
	QuotaDelay Duration `yaml:"quota_delay,omitempty" json:"quota_delay,omitzero"`
}

// Mock programs mockwx: the apps it serves, mock-wide settings, the fault
// rules active from the start, and a timeline of actions.
type Mock struct {
	// Apps are the Official Accounts; default one app named "default"
	// (mockwx's demo app).
	Apps []App `yaml:"apps,omitempty" json:"apps,omitempty"`
	// Settings are mockwx's settings (callback delay, dedup window, ...).
	Settings mockwx.Settings `yaml:"settings,omitempty" json:"settings,omitzero"`
	// Rules are fault rules added before the load starts.
	Rules []Rule `yaml:"rules,omitempty" json:"rules,omitempty"`
	// Timeline lists actions at times relative to the start of the load.
	Timeline []Action `yaml:"timeline,omitempty" json:"timeline,omitempty"`
}

// App is one WeChat app, known to the mock and to wxpushd under Name. Its
// credentials and templates are the demo app's (with a distinct appid per
// app); the load addresses it by Name.
type App struct {
	// Name is the app's name in wxpushd ("app" in a send request).
	Name string `yaml:"name" json:"name" jsonschema:"pattern=^[a-z0-9][a-z0-9_-]*$"`
	// AppID is the app's appid (default: the demo app's for the first app,
	// one derived from the name for the others); fault rules match on it.
	AppID string `yaml:"appid,omitempty" json:"appid,omitempty" jsonschema:"pattern=^wx[0-9a-f]{16}$"`
	// CallbackMode is how the mock pushes delivery reports to wxpushd:
	// plain (default), compat, safe, or off.
	CallbackMode string `yaml:"callback_mode,omitempty" json:"callback_mode,omitempty" jsonschema:"enum=plain,enum=compat,enum=safe,enum=off"`
	// TokenExpiresIn is an access token's lifetime in seconds at the mock
	// (default 7200).
	TokenExpiresIn int `yaml:"token_expires_in,omitempty" json:"token_expires_in,omitempty" jsonschema:"minimum=1"`
	// TemplateDailyLimit is the mock's daily template-send quota (default
	// large enough for any run; 45009 after it).
	TemplateDailyLimit int `yaml:"template_daily_limit,omitempty" json:"template_daily_limit,omitempty" jsonschema:"minimum=1"`
	// RateLimit is wxpushd's send rate limit for the app, messages/s
	// across all instances (default none).
	RateLimit float64 `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty" jsonschema:"minimum=0"`
	// Weight is the app's share of the load (default 1).
	Weight float64 `yaml:"weight,omitempty" json:"weight,omitempty" jsonschema:"minimum=0"`
	// Templates replace the demo app's templates (typed fields, as in
	// mockwx's config); the load's template mix names them.
	Templates []mockwx.Template `yaml:"templates,omitempty" json:"templates,omitempty"`
	// Followers replace the demo app's followers: who does not follow
	// (43004) and who blocked the app ("failed:user block"); blocked_ratio
	// addresses the first blocked openid.
	Followers *mockwx.Followers `yaml:"followers,omitempty" json:"followers,omitempty"`
	// Replies are wxpushd's passive replies for the app, first match wins.
	Replies []Reply `yaml:"replies,omitempty" json:"replies,omitempty"`
}

// MockApp is the mockwx app the scenario app stands for: the demo app with
// the scenario's overrides. index is the app's position in the list.
func (a App) MockApp(index int) mockwx.App {
	ma := mockwx.DemoApp()
	switch {
	case a.AppID != "":
		ma.AppID = a.AppID
	case index > 0 || a.Name != DefaultAppName:
		ma.AppID = derivedAppID(a.Name)
	}
	if ma.AppID != mockwx.DemoAppID {
		ma.Secret = derivedSecret(a.Name)
		ma.OriginalID = ""
	}
	ma.TokenExpiresIn = a.TokenExpiresIn
	ma.TemplateDailyLimit = a.TemplateDailyLimit
	if len(a.Templates) > 0 {
		ma.Templates = a.Templates
	}
	if a.Followers != nil {
		ma.Followers = *a.Followers
	}
	return ma
}

// derivedAppID is a stable appid for an app that does not set one.
func derivedAppID(name string) string {
	h := sha256.Sum256([]byte("wxload-app:" + name))
	return "wx" + hex.EncodeToString(h[:8])
}

func derivedSecret(name string) string {
	h := sha256.Sum256([]byte("wxload-secret:" + name))
	return hex.EncodeToString(h[:16])
}

// Rule is a mockwx fault rule (the admin API's JSON rule, as YAML) with an
// optional name that timeline actions use to remove it.
type Rule struct {
	// Name lets remove_rule refer to the rule.
	Name        string `yaml:"name,omitempty" json:"name,omitempty"`
	mockwx.Rule `yaml:",inline"`
}

// Action is one timeline step: exactly one of its action fields is set.
type Action struct {
	// At is the time after the start of the load.
	At Duration `yaml:"at" json:"at"`
	// AddRule adds a fault rule (its after_ms/for_ms count from now).
	AddRule *Rule `yaml:"add_rule,omitempty" json:"add_rule,omitempty"`
	// RemoveRule removes the rule with that name.
	RemoveRule string `yaml:"remove_rule,omitempty" json:"remove_rule,omitempty"`
	// ClearRules removes every rule.
	ClearRules bool `yaml:"clear_rules,omitempty" json:"clear_rules,omitempty"`
	// ExpireTokens makes the current tokens of an app ("" or "*": all)
	// answer 42001.
	ExpireTokens *ExpireTokens `yaml:"expire_tokens,omitempty" json:"expire_tokens,omitempty"`
	// RestartRedis stops the embedded Redis for Down, then starts it again
	// on the same address with its data (a restart with persistence).
	RestartRedis *RestartRedis `yaml:"restart_redis,omitempty" json:"restart_redis,omitempty"`
	// KillInstance kills wxpushd instance N (0-based) like kill -9.
	KillInstance *int `yaml:"kill_instance,omitempty" json:"kill_instance,omitempty"`
	// StartInstance starts instance N again on its address.
	StartInstance *int `yaml:"start_instance,omitempty" json:"start_instance,omitempty"`
}

// Kind names the action that is set ("" when none is).
func (a Action) Kind() string {
	var kinds []string
	if a.AddRule != nil {
		kinds = append(kinds, "add_rule")
	}
	if a.RemoveRule != "" {
		kinds = append(kinds, "remove_rule")
	}
	if a.ClearRules {
		kinds = append(kinds, "clear_rules")
	}
	if a.ExpireTokens != nil {
		kinds = append(kinds, "expire_tokens")
	}
	if a.RestartRedis != nil {
		kinds = append(kinds, "restart_redis")
	}
	if a.KillInstance != nil {
		kinds = append(kinds, "kill_instance")
	}
	if a.StartInstance != nil {
		kinds = append(kinds, "start_instance")
	}
	return strings.Join(kinds, ",")
}

// ExpireTokens is the expire_tokens action.
type ExpireTokens struct {
	// App is the app's name; "" or "*" means every app.
	App string `yaml:"app,omitempty" json:"app,omitempty"`
}

// RestartRedis is the restart_redis action.
type RestartRedis struct {
	// Down is how long Redis stays down (default 2s).
	Down Duration `yaml:"down,omitempty" json:"down,omitzero"`
}

// Load is the traffic the generator offers: an open model (requests are
// sent on schedule whatever the service's latency).
type Load struct {
	// Duration of the attack (a steps pacer may leave it out: the steps'
	// total).
	Duration Duration `yaml:"duration,omitempty" json:"duration,omitzero"`
	// Pacer shapes the request rate over time.
	Pacer Pacer `yaml:"pacer" json:"pacer"`
	// Recipients is the size of the openid pool (default 1000).
	Recipients int `yaml:"recipients,omitempty" json:"recipients,omitempty" jsonschema:"minimum=1"`
	// Templates is the template mix (default order_shipped only).
	Templates []TemplateShare `yaml:"templates,omitempty" json:"templates,omitempty"`
	// DuplicateRatio is the share of requests that repeat an earlier
	// request with its Idempotency-Key (0..0.9).
	DuplicateRatio float64 `yaml:"duplicate_ratio,omitempty" json:"duplicate_ratio,omitempty" jsonschema:"minimum=0,maximum=0.9"`
	// BlockedRatio is the share of messages addressed to a user who
	// blocked the app: WeChat accepts them and reports "failed:user block".
	BlockedRatio float64 `yaml:"blocked_ratio,omitempty" json:"blocked_ratio,omitempty" jsonschema:"minimum=0,maximum=1"`
	// Batch sends part of the load through POST /v1/messages/batch.
	Batch Batch `yaml:"batch,omitempty" json:"batch,omitzero"`
	// Users simulates the account's users alongside the sends: events and
	// messages, replies, an unfollow wave (see Users).
	Users *Users `yaml:"users,omitempty" json:"users,omitempty"`
	// Timeout bounds one API request (default 10s).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitzero"`
}

// TemplateShare is one template of the mix and its weight.
type TemplateShare struct {
	ID     string  `yaml:"id" json:"id"`
	Weight float64 `yaml:"weight,omitempty" json:"weight,omitempty" jsonschema:"minimum=0"`
}

// Batch sends a share of the requests as batches.
type Batch struct {
	// Share of requests that are batches (0..1).
	Share float64 `yaml:"share,omitempty" json:"share,omitempty" jsonschema:"minimum=0,maximum=1"`
	// Size is the messages per batch (default 10, at most 1000).
	Size int `yaml:"size,omitempty" json:"size,omitempty" jsonschema:"minimum=1,maximum=1000"`
}

// The pacer types.
const (
	PacerConstant = "constant"
	PacerLinear   = "linear"
	PacerSine     = "sine"
	PacerSteps    = "steps"
)

// Pacer shapes the offered rate (requests per second) over time.
type Pacer struct {
	// Type is constant (default), linear, sine or steps.
	Type string `yaml:"type,omitempty" json:"type,omitempty" jsonschema:"enum=constant,enum=linear,enum=sine,enum=steps"`
	// Rate is the constant rate, the linear ramp's start, or the sine's
	// mean, in requests per second.
	Rate float64 `yaml:"rate,omitempty" json:"rate,omitempty" jsonschema:"minimum=0"`
	// To is where a linear ramp ends at the end of the load.
	To float64 `yaml:"to,omitempty" json:"to,omitempty" jsonschema:"minimum=0"`
	// Amp is the sine's amplitude (less than Rate); Period its period.
	Amp    float64  `yaml:"amp,omitempty" json:"amp,omitempty" jsonschema:"minimum=0"`
	Period Duration `yaml:"period,omitempty" json:"period,omitzero"`
	// Steps are consecutive constant rates; their durations add up to the
	// load's duration.
	Steps []Step `yaml:"steps,omitempty" json:"steps,omitempty"`
}

// Step is one constant-rate stretch of a steps pacer.
type Step struct {
	Rate     float64  `yaml:"rate" json:"rate" jsonschema:"minimum=0"`
	Duration Duration `yaml:"duration" json:"duration"`
}

// Expectation is one condition over summary.json, written as an
// expression (expr-lang syntax) such as "delivery.lost == 0" or
// "accept.latency_ms.p99 < 25". In YAML it is either the expression alone
// or {name, expr}.
type Expectation struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	Expr string `yaml:"expr" json:"expr"`
}

// UnmarshalYAML accepts a plain string as the expression.
func (e *Expectation) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		*e = Expectation{Expr: s}
		return nil
	}
	type plain Expectation
	var p plain
	if err := unmarshal(&p); err != nil {
		return err
	}
	*e = Expectation(p)
	return nil
}

// JSONSchema allows the expression alone or {name, expr}.
func (Expectation) JSONSchema() *jsonschema.Schema {
	obj := jsonschema.NewProperties()
	obj.Set("name", &jsonschema.Schema{Type: "string", Description: "A label for the report."})
	obj.Set("expr", &jsonschema.Schema{Type: "string", Description: "An expr-lang expression over summary.json fields."})
	return &jsonschema.Schema{
		Description: "An expectation over summary.json, e.g. delivery.lost == 0.",
		OneOf: []*jsonschema.Schema{
			{Type: "string"},
			{Type: "object", Properties: obj, Required: []string{"expr"}, AdditionalProperties: jsonschema.FalseSchema},
		},
	}
}

// Label is the expectation's name, or its expression when unnamed.
func (e Expectation) Label() string {
	if e.Name != "" {
		return e.Name
	}
	return e.Expr
}

// Duration is a time.Duration written as a Go duration string ("1.5s",
// "2m") in YAML and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration string; a bare number is seconds.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. 500ms, 10s, 2m)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats like time.Duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML parses a duration scalar.
func (d *Duration) UnmarshalYAML(b []byte) error {
	return d.UnmarshalText([]byte(strings.Trim(strings.TrimSpace(string(b)), `"'`)))
}

// UnmarshalJSON accepts a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return d.UnmarshalText([]byte(s))
	}
	return d.UnmarshalText(b)
}

// JSONSchema describes the duration for editors.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Description: "A Go duration such as 500ms, 10s or 2m, or a number of seconds.",
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`},
			{Type: "number", Minimum: "0"},
		},
	}
}
