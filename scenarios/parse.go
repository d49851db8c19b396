package scenarios

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr/parser"
	"github.com/goccy/go-yaml"
	yamlparser "github.com/goccy/go-yaml/parser"

	"github.com/wxpush/wxpush/mockwx"
)

// Limits a scenario must stay within.
const (
	MaxInstances    = 8
	MaxRate         = 100_000
	MaxDuration     = time.Hour
	MaxDrainTimeout = 30 * time.Minute
	MaxBatchSize    = 1000
	MaxRecipients   = 10_000_000
	// MaxPartitions bounds stack.partitions (wxpushd's own bound).
	MaxPartitions = 1024
)

// RedisCluster is the value of stack.redis that runs the embedded stack
// on a private Redis Cluster of 3 masters + 3 replicas.
const RedisCluster = "cluster"

// Defaults.
const (
	DefaultDrainTimeout = 60 * time.Second
	DefaultRecipients   = 1000
	DefaultTemplate     = "order_shipped"
	DefaultBatchSize    = 10
	DefaultAppName      = "default"
	DefaultRedisDown    = 2 * time.Second
	DefaultTimeout      = 10 * time.Second
)

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	appNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	appIDPattern   = regexp.MustCompile(`^wx[0-9a-f]{16}$`)
)

// Problem is one thing wrong with a scenario: where (file, line, field
// path) and what.
type Problem struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. load.pacer.rate
	Msg  string
}

// Error formats the problem as FILE:LINE: PATH: MESSAGE.
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a scenario, in the order of the file.
type Problems []Problem

// Error is every problem, one per line.
func (ps Problems) Error() string {
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// ReadFile reads and parses a scenario file.
func ReadFile(path string) (Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, err
	}
	return Parse(data, filepath.Base(path))
}

// Parse decodes a scenario strictly (unknown keys are errors with their
// line), validates it and fills in defaults. file names the source in
// error messages. The error is a Problems when the scenario is invalid.
func Parse(data []byte, file string) (Scenario, error) {
	var sc Scenario
	if len(bytes.TrimSpace(data)) == 0 {
		return Scenario{}, Problems{{File: file, Msg: "empty scenario"}}
	}
	if err := decode(data, &sc); err != nil {
		return Scenario{}, Problems{{File: file, Msg: err.Error()}}
	}
	if ps := sc.validate(); len(ps) > 0 {
		locate(ps, data, file)
		return Scenario{}, ps
	}
	return sc.WithDefaults(), nil
}

// decode is the strict YAML decode. go-yaml v1.19.2 panics on a tagged
// scalar where a list belongs (goccy/go-yaml#735): that is bad input, so it
// is reported as such.
func decode(data []byte, sc *Scenario) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid YAML: a value does not have the expected shape (e.g. a tagged scalar where a list belongs)")
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, sc, yaml.Strict()); err != nil {
		return errors.New(yaml.FormatError(err, false, true))
	}
	return nil
}

// locate fills in the file and the line of each problem's path.
func locate(ps Problems, data []byte, file string) {
	f, err := yamlparser.ParseBytes(data, 0)
	for i := range ps {
		ps[i].File = file
		if err != nil || ps[i].Path == "" {
			continue
		}
		// Walk up the path until a node exists (a missing key is reported
		// at its parent).
		for p := ps[i].Path; p != ""; p = parentPath(p) {
			yp, perr := yaml.PathString("$." + p)
			if perr != nil {
				continue
			}
			if n, ferr := yp.FilterFile(f); ferr == nil && n != nil {
				ps[i].Line = n.GetToken().Position.Line
				break
			}
		}
	}
}

func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return ""
}

// Validate checks a scenario built in Go (Parse validates as it decodes).
func (sc Scenario) Validate() error {
	if ps := sc.validate(); len(ps) > 0 {
		return ps
	}
	return nil
}

type checker struct{ ps Problems }

func (c *checker) add(path, format string, args ...any) {
	c.ps = append(c.ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (sc Scenario) validate() Problems {
	c := &checker{}
	switch {
	case sc.Name == "":
		c.add("name", "is required")
	case !namePattern.MatchString(sc.Name):
		c.add("name", "%q: use lowercase letters, digits and dashes", sc.Name)
	}
	if strings.TrimSpace(sc.Description) == "" {
		c.add("description", "is required: say what the run shows")
	}
	sc.Stack.check(c)
	sc.Mock.check(c, sc.Stack.instances(), sc.Load.effectiveDuration())
	sc.Load.check(c, sc.Mock.Apps)
	if d := sc.DrainTimeout.D(); d < 0 || d > MaxDrainTimeout {
		c.add("drain_timeout", "%s is out of range (0 to %s)", d, MaxDrainTimeout)
	}
	if len(sc.Expect) == 0 {
		c.add("expect", "list at least one expectation, e.g. \"delivery.lost == 0\"")
	}
	for i, e := range sc.Expect {
		p := fmt.Sprintf("expect[%d]", i)
		if strings.TrimSpace(e.Expr) == "" {
			c.add(p, "the expression is empty")
			continue
		}
		if _, err := parser.Parse(e.Expr); err != nil {
			c.add(p, "expression %q: %s", e.Expr, firstLine(err.Error()))
		}
	}
	return c.ps
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (st Stack) instances() int {
	if st.Instances == 0 {
		return 1
	}
	return st.Instances
}

func (st Stack) check(c *checker) {
	if st.Instances < 0 || st.Instances > MaxInstances {
		c.add("stack.instances", "%d is out of range (1 to %d)", st.Instances, MaxInstances)
	}
	if st.Workers < 0 {
		c.add("stack.workers", "must not be negative")
	}
	if st.Redis != "" && st.Redis != RedisCluster {
		c.add("stack.redis", "%q: use %s (a private Redis Cluster of 3 masters + 3 replicas), or leave it out for one Redis", st.Redis, RedisCluster)
	}
	if st.Partitions < 0 || st.Partitions > MaxPartitions {
		c.add("stack.partitions", "%d is out of range (1 to %d)", st.Partitions, MaxPartitions)
	}
	if st.TokenMode != "" && st.TokenMode != "stable" && st.TokenMode != "classic" {
		c.add("stack.token_mode", "%q: use stable or classic", st.TokenMode)
	}
	if st.MaxAttempts < 0 {
		c.add("stack.max_attempts", "must not be negative")
	}
	for _, d := range []struct {
		path string
		v    Duration
	}{
		{"stack.backoff_base", st.BackoffBase}, {"stack.backoff_cap", st.BackoffCap},
		{"stack.send_timeout", st.SendTimeout}, {"stack.visibility", st.Visibility},
		{"stack.pace_delay", st.PaceDelay}, {"stack.quota_delay", st.QuotaDelay},
	} {
		if d.v < 0 {
			c.add(d.path, "must not be negative")
		}
	}
}

// check validates the mock program and returns the app names.
func (m Mock) check(c *checker, instances int, loadDuration time.Duration) []string {
	var names []string
	for i, a := range m.Apps {
		p := fmt.Sprintf("mock.apps[%d]", i)
		switch {
		case a.Name == "":
			c.add(p+".name", "is required")
		case !appNamePattern.MatchString(a.Name):
			c.add(p+".name", "%q: use lowercase letters, digits, - and _", a.Name)
		case slices.Contains(names, a.Name):
			c.add(p+".name", "%q is used twice", a.Name)
		}
		names = append(names, a.Name)
		if a.AppID != "" && !appIDPattern.MatchString(a.AppID) {
			c.add(p+".appid", "%q: an appid is wx followed by 16 hex digits", a.AppID)
		}
		switch a.CallbackMode {
		case "", "plain", "compat", "safe", "off":
		default:
			c.add(p+".callback_mode", "%q: use plain, compat, safe or off", a.CallbackMode)
		}
		if a.TokenExpiresIn < 0 {
			c.add(p+".token_expires_in", "must not be negative")
		}
		if a.RateLimit < 0 || math.IsNaN(a.RateLimit) || a.RateLimit > MaxRate {
			c.add(p+".rate_limit", "%v is out of range (0 for none, up to %d)", a.RateLimit, MaxRate)
		}
		if a.TemplateDailyLimit < 0 {
			c.add(p+".template_daily_limit", "must not be negative")
		}
		if a.Weight < 0 || math.IsNaN(a.Weight) {
			c.add(p+".weight", "must not be negative")
		}
		checkReplies(c, p, a.Replies)
		if len(a.Templates) > 0 || a.Followers != nil {
			// The mock's own validation, reported under this app's path.
			if err := (mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{a.MockApp(i)}}).Validate(); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					c.add(p, "%s", strings.TrimPrefix(line, "apps[0]."))
				}
			}
		}
	}
	if len(names) == 0 {
		names = []string{DefaultAppName}
	}
	ruleNames := map[string]bool{}
	checkRule := func(p string, r Rule) {
		if r.Name != "" {
			if ruleNames[r.Name] {
				c.add(p+".name", "rule name %q is used twice", r.Name)
			}
			ruleNames[r.Name] = true
		}
		b, err := json.Marshal(r.Rule)
		if err == nil {
			_, err = mockwx.ParseRule(b)
		}
		if err != nil {
			c.add(p, "%v", err)
		}
	}
	for i, r := range m.Rules {
		checkRule(fmt.Sprintf("mock.rules[%d]", i), r)
	}
	killed := map[int]bool{}
	last := time.Duration(-1)
	for i, a := range m.Timeline {
		p := fmt.Sprintf("mock.timeline[%d]", i)
		at := a.At.D()
		if at < 0 || at > loadDuration && loadDuration > 0 {
			c.add(p+".at", "%s is outside the load (0 to %s)", at, loadDuration)
		}
		if at < last {
			c.add(p+".at", "%s comes before the previous action (%s): list actions in time order", at, last)
		}
		last = at
		kind := a.Kind()
		switch {
		case kind == "":
			c.add(p, "no action: set one of add_rule, remove_rule, clear_rules, expire_tokens, restart_redis, kill_instance, start_instance")
			continue
		case strings.Contains(kind, ","):
			c.add(p, "one action per step, found %s", kind)
			continue
		}
		switch {
		case a.AddRule != nil:
			checkRule(p+".add_rule", *a.AddRule)
		case a.RemoveRule != "":
			if !ruleNames[a.RemoveRule] {
				c.add(p+".remove_rule", "no rule named %q before this step", a.RemoveRule)
			}
		case a.ExpireTokens != nil:
			if app := a.ExpireTokens.App; app != "" && app != "*" && !slices.Contains(names, app) {
				c.add(p+".expire_tokens.app", "no app named %q", app)
			}
		case a.RestartRedis != nil:
			if d := a.RestartRedis.Down.D(); d < 0 || d > time.Minute {
				c.add(p+".restart_redis.down", "%s is out of range (0 to 1m)", d)
			}
		case a.KillInstance != nil:
			n := *a.KillInstance
			switch {
			case n < 0 || n >= instances:
				c.add(p+".kill_instance", "no instance %d (the stack has %d, numbered from 0)", n, instances)
			case killed[n]:
				c.add(p+".kill_instance", "instance %d is already killed", n)
			default:
				killed[n] = true
				if len(killed) == instances {
					c.add(p+".kill_instance", "this kills the last running instance")
				}
			}
		case a.StartInstance != nil:
			n := *a.StartInstance
			if !killed[n] {
				c.add(p+".start_instance", "instance %d is not killed at this point", n)
			}
			delete(killed, n)
		}
	}
	return names
}

func (l Load) check(c *checker, apps []App) {
	d := l.Duration.D()
	switch {
	case d <= 0 && l.Pacer.Type != PacerSteps:
		c.add("load.duration", "is required (e.g. 30s)")
	case d > MaxDuration:
		c.add("load.duration", "%s is longer than %s", d, MaxDuration)
	}
	rateOK := func(path string, r float64, allowZero bool) {
		if math.IsNaN(r) || r < 0 || r > MaxRate || (!allowZero && r == 0) {
			c.add(path, "%v requests/s is out of range (%s to %d)", r, map[bool]string{true: "0", false: "above 0"}[allowZero], MaxRate)
		}
	}
	p := l.Pacer
	switch p.Type {
	case "", PacerConstant:
		rateOK("load.pacer.rate", p.Rate, false)
	case PacerLinear:
		rateOK("load.pacer.rate", p.Rate, true)
		rateOK("load.pacer.to", p.To, true)
		if p.Rate == 0 && p.To == 0 {
			c.add("load.pacer", "a linear ramp needs rate (start) or to (end) above 0")
		}
	case PacerSine:
		rateOK("load.pacer.rate", p.Rate, false)
		if p.Amp < 0 || p.Amp >= p.Rate {
			c.add("load.pacer.amp", "must be at least 0 and below rate (%v)", p.Rate)
		}
		if p.Period.D() <= 0 {
			c.add("load.pacer.period", "is required for a sine pacer (e.g. 10s)")
		}
	case PacerSteps:
		if len(p.Steps) == 0 {
			c.add("load.pacer.steps", "list at least one step")
		}
		var sum time.Duration
		for i, s := range p.Steps {
			rateOK(fmt.Sprintf("load.pacer.steps[%d].rate", i), s.Rate, true)
			if s.Duration.D() <= 0 {
				c.add(fmt.Sprintf("load.pacer.steps[%d].duration", i), "must be above 0")
			}
			sum += s.Duration.D()
		}
		if d > 0 && sum != d {
			c.add("load.pacer.steps", "the steps last %s but load.duration is %s (omit load.duration to use the steps' total)", sum, d)
		}
		if sum > MaxDuration {
			c.add("load.pacer.steps", "the steps last %s, longer than %s", sum, MaxDuration)
		}
	default:
		c.add("load.pacer.type", "%q: use constant, linear, sine or steps", p.Type)
	}
	if p.Type != PacerSine && (p.Amp != 0 || p.Period != 0) {
		c.add("load.pacer", "amp and period apply to the sine pacer only")
	}
	if p.Type != PacerLinear && p.To != 0 {
		c.add("load.pacer.to", "applies to the linear pacer only")
	}
	if p.Type != PacerSteps && len(p.Steps) > 0 {
		c.add("load.pacer.steps", "apply to the steps pacer only")
	}
	if l.Recipients < 0 || l.Recipients > MaxRecipients {
		c.add("load.recipients", "%d is out of range (1 to %d)", l.Recipients, MaxRecipients)
	}
	var total float64
	seen := map[string]bool{}
	for i, t := range l.Templates {
		path := fmt.Sprintf("load.templates[%d]", i)
		if t.ID == "" {
			c.add(path+".id", "is required")
		}
		for _, a := range apps {
			if len(a.Templates) > 0 && t.ID != "" && !slices.ContainsFunc(a.Templates, func(x mockwx.Template) bool { return x.ID == t.ID }) {
				c.add(path+".id", "app %q has no template %q", a.Name, t.ID)
			}
		}
		if seen[t.ID] {
			c.add(path+".id", "%q is listed twice", t.ID)
		}
		seen[t.ID] = true
		if t.Weight < 0 || math.IsNaN(t.Weight) {
			c.add(path+".weight", "must not be negative")
		}
		total += t.weight()
	}
	if len(l.Templates) > 0 && total <= 0 {
		c.add("load.templates", "the weights add up to 0")
	}
	if l.DuplicateRatio < 0 || l.DuplicateRatio > 0.9 || math.IsNaN(l.DuplicateRatio) {
		c.add("load.duplicate_ratio", "%v is out of range (0 to 0.9)", l.DuplicateRatio)
	}
	if l.BlockedRatio < 0 || l.BlockedRatio > 1 || math.IsNaN(l.BlockedRatio) {
		c.add("load.blocked_ratio", "%v is out of range (0 to 1)", l.BlockedRatio)
	}
	if l.Batch.Share < 0 || l.Batch.Share > 1 || math.IsNaN(l.Batch.Share) {
		c.add("load.batch.share", "%v is out of range (0 to 1)", l.Batch.Share)
	}
	if l.Batch.Size < 0 || l.Batch.Size > MaxBatchSize {
		c.add("load.batch.size", "%d is out of range (1 to %d)", l.Batch.Size, MaxBatchSize)
	}
	if l.Timeout < 0 {
		c.add("load.timeout", "must not be negative")
	}
	l.Users.check(c, apps, l.effectiveDuration())
}

// effectiveDuration is load.duration, or the steps' total when a steps
// pacer leaves it out.
func (l Load) effectiveDuration() time.Duration {
	if l.Duration == 0 && l.Pacer.Type == PacerSteps {
		var d time.Duration
		for _, s := range l.Pacer.Steps {
			d += s.Duration.D()
		}
		return d
	}
	return l.Duration.D()
}

func (t TemplateShare) weight() float64 {
	if t.Weight == 0 {
		return 1
	}
	return t.Weight
}

// WithDefaults returns the scenario with every default filled in.
func (sc Scenario) WithDefaults() Scenario {
	if sc.Seed == 0 {
		sc.Seed = 1
	}
	if sc.Stack.Instances == 0 {
		sc.Stack.Instances = 1
	}
	if sc.DrainTimeout == 0 {
		sc.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	if len(sc.Mock.Apps) == 0 {
		sc.Mock.Apps = []App{{Name: DefaultAppName}}
	} else {
		sc.Mock.Apps = slices.Clone(sc.Mock.Apps)
	}
	for i := range sc.Mock.Apps {
		a := &sc.Mock.Apps[i]
		if a.CallbackMode == "" {
			a.CallbackMode = "plain"
		}
		if a.Weight == 0 {
			a.Weight = 1
		}
	}
	l := &sc.Load
	if l.Pacer.Type == "" {
		l.Pacer.Type = PacerConstant
	}
	if l.Pacer.Type == PacerSteps && l.Duration == 0 {
		for _, s := range l.Pacer.Steps {
			l.Duration += s.Duration
		}
	}
	if l.Recipients == 0 {
		l.Recipients = DefaultRecipients
	}
	if len(l.Templates) == 0 {
		l.Templates = []TemplateShare{{ID: DefaultTemplate, Weight: 1}}
	} else {
		l.Templates = slices.Clone(l.Templates)
	}
	for i := range l.Templates {
		l.Templates[i].Weight = l.Templates[i].weight()
	}
	if l.Batch.Share > 0 && l.Batch.Size == 0 {
		l.Batch.Size = DefaultBatchSize
	}
	if l.Timeout == 0 {
		l.Timeout = Duration(DefaultTimeout)
	}
	for i := range sc.Mock.Timeline {
		if r := sc.Mock.Timeline[i].RestartRedis; r != nil && r.Down == 0 {
			sc.Mock.Timeline[i].RestartRedis = &RestartRedis{Down: Duration(DefaultRedisDown)}
		}
	}
	return sc
}

// ErrNotFound is returned by Get for an unknown catalog name.
var ErrNotFound = errors.New("no such scenario")
