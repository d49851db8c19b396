package mockwx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint names a mocked WeChat API surface that a fault rule can target.
type Endpoint string

// Endpoints a rule can target. EndpointAny matches every endpoint.
const (
	// EndpointToken is GET /cgi-bin/token.
	EndpointToken Endpoint = "token"
	// EndpointStableToken is POST /cgi-bin/stable_token.
	EndpointStableToken Endpoint = "stable_token"
	// EndpointTemplateSend is POST /cgi-bin/message/template/send.
	EndpointTemplateSend Endpoint = "template_send"
	// EndpointCallback is the mock pushing a TEMPLATESENDJOBFINISH event to
	// the application's callback URL.
	EndpointCallback Endpoint = "callback"
	// EndpointUserInfo is GET /cgi-bin/user/info (match.touser: the openid).
	EndpointUserInfo Endpoint = "user_info"
	// EndpointUserGet is GET /cgi-bin/user/get.
	EndpointUserGet Endpoint = "user_get"
	// EndpointTemplateList is GET /cgi-bin/template/get_all_private_template.
	EndpointTemplateList Endpoint = "template_list"
	// EndpointCustomSend is POST /cgi-bin/message/custom/send.
	EndpointCustomSend Endpoint = "custom_send"
	// EndpointEvent is each try of pushing a simulated user's event or
	// message to the app: latency delays the try, a connection fault loses
	// the app's answer to it (so WeChat retries).
	EndpointEvent Endpoint = "event"
	// EndpointAny matches calls to every WeChat API endpoint (not pushes).
	EndpointAny Endpoint = "*"
)

// Limits enforced by Validate.
const (
	// maxLatencyMS caps every latency value, and every sampled delay.
	maxLatencyMS = 120_000
	// maxWindowMS caps after_ms and for_ms (365 days) so that converting them
	// to a time.Duration can never overflow.
	maxWindowMS int64 = 365 * 24 * 60 * 60 * 1000
	// z99 is the 99th percentile of the standard normal distribution.
	z99 = 2.3263478740408408
)

// Match narrows a rule to calls with particular parameters. An empty field
// matches any value.
type Match struct {
	AppID      string `json:"appid,omitempty"`
	ToUser     string `json:"touser,omitempty"`
	TemplateID string `json:"template_id,omitempty"`
}

// Latency describes the extra delay a firing rule adds. Exactly one form must
// be given: FixedMS alone, MinMS and MaxMS together (uniform), or P50MS and
// P99MS together (lognormal). The fields are pointers so that an explicit 0
// can be told apart from an absent field.
type Latency struct {
	FixedMS *int `json:"fixed_ms,omitempty"`
	MinMS   *int `json:"min_ms,omitempty"`
	MaxMS   *int `json:"max_ms,omitempty"`
	P50MS   *int `json:"p50_ms,omitempty"`
	P99MS   *int `json:"p99_ms,omitempty"`
}

// Rule is one fault rule as accepted by POST /_mock/faults. A rule has at
// most one action, given either in typed form (Action, one of the
// registered ActionKinds) or by the equivalent flat field (ErrCode with
// optional ErrMsg, HTTPStatus, Fault or DeliveryStatus), not both. Latency
// adds a delay to any action; a rule with neither action nor Latency has
// no effect and is invalid. A flat rule with a Latency and no action is
// the same as a typed latency action: it only delays the call.
//
// The flat fields are the original wire form, kept so that existing JSON,
// YAML and Go rules work unchanged; TypedAction gives either form as a
// registered kind, and the engine only ever works with that.
type Rule struct {
	Endpoint Endpoint `json:"endpoint"`
	Match    Match    `json:"match,omitzero"`
	// Action is the typed form: {"type":"errcode","errcode":45009}.
	Action *RuleAction `json:"action,omitempty"`
	// ErrCode (with ErrMsg) is the flat form of an ErrCodeAction.
	ErrCode int    `json:"errcode,omitempty"`
	ErrMsg  string `json:"errmsg,omitempty"`
	// HTTPStatus is the flat form of an HTTPStatusAction.
	HTTPStatus int `json:"http_status,omitempty"`
	// Fault is the flat form of a FaultAction.
	Fault FaultKind `json:"fault,omitempty"`
	// DeliveryStatus is the flat form of a DeliveryStatusAction.
	DeliveryStatus string `json:"delivery_status,omitempty"`
	// Latency delays the call in addition to the action; alone, it is
	// the flat form of a LatencyAction.
	Latency     *Latency `json:"latency,omitempty"`
	Probability *float64 `json:"probability,omitempty"`
	Skip        int      `json:"skip,omitempty"`
	Times       int      `json:"times,omitempty"`
	AfterMS     int      `json:"after_ms,omitempty"`
	ForMS       int      `json:"for_ms,omitempty"`
}

// explicitActions records which action fields were present in the JSON, so
// that an explicit zero ("errcode": 0) gets a precise error instead of being
// mistaken for an absent field.
type explicitActions struct {
	ErrCode        *int             `json:"errcode"`
	HTTPStatus     *int             `json:"http_status"`
	Fault          *json.RawMessage `json:"fault"`
	DeliveryStatus *json.RawMessage `json:"delivery_status"`
}

// ParseRule decodes one rule from JSON and validates it. Unknown fields,
// trailing data and invalid rules are rejected with an error naming the
// offending field.
func ParseRule(data []byte) (Rule, error) {
	var r Rule
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		if fe := (*fieldError)(nil); errors.As(err, &fe) {
			return Rule{}, fe
		}
		if errors.Is(err, io.EOF) {
			return Rule{}, errors.New("empty input: expected a JSON rule object")
		}
		return Rule{}, fmt.Errorf("invalid rule JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Rule{}, errors.New("invalid rule JSON: unexpected data after the rule object")
	}

	// The data is known to be valid JSON of the right shape, so this lenient
	// second pass only finds out which action fields were given explicitly.
	var ex explicitActions
	_ = json.Unmarshal(data, &ex)
	var zero []string
	if ex.ErrCode != nil && *ex.ErrCode == 0 {
		zero = append(zero, "errcode: must be non-zero")
	}
	if ex.HTTPStatus != nil && *ex.HTTPStatus == 0 {
		zero = append(zero, "http_status: must be between 400 and 599")
	}
	if ex.Fault != nil && r.Fault == "" {
		zero = append(zero, "fault: "+faultChoices)
	}
	if ex.DeliveryStatus != nil && r.DeliveryStatus == "" {
		zero = append(zero, "delivery_status: "+deliveryChoices)
	}
	if err := joinProblems(append(zero, r.problems(len(zero) > 0)...)); err != nil {
		return Rule{}, err
	}
	return r, nil
}

const (
	endpointChoices = "must be one of token, stable_token, template_send, user_info, user_get, template_list, custom_send, callback, event, *"
	deliveryChoices = `must be "success" or start with "failed" (e.g. "failed:user block", "failed: system failed")`
	actionChoices   = "errcode, http_status, fault, delivery_status"
)

// Validate reports whether r is a usable rule. The error lists every problem
// found, each prefixed with the name of the field at fault.
func (r Rule) Validate() error {
	return joinProblems(r.problems(false))
}

func joinProblems(p []string) error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}

// problems lists everything wrong with r. hadZeroAction suppresses the
// "no action" complaint when the caller already reported an action field
// that was given explicitly with a zero value.
func (r Rule) problems(hadZeroAction bool) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	spec, known := endpoints[r.Endpoint]
	switch {
	case known:
	case r.Endpoint == "":
		add("endpoint: is required; %s", endpointChoices)
	default:
		add("endpoint: %s (got %q)", endpointChoices, string(r.Endpoint))
	}
	if known {
		if r.Match.ToUser != "" && !spec.touser {
			add("match.touser: not available on endpoint %s (only %s)", r.Endpoint, endpointsWith(func(e endpointSpec) bool { return e.touser }))
		}
		if r.Match.TemplateID != "" && !spec.templateID {
			add("match.template_id: not available on endpoint %s (only %s)", r.Endpoint, endpointsWith(func(e endpointSpec) bool { return e.templateID }))
		}
	}

	// The action: typed, or given by a flat field.
	var kinds []ActionKind
	prefix := ""
	if r.Action != nil {
		prefix = "action."
		switch {
		case r.Action.err != nil:
			p = append(p, r.Action.err.Error())
		case r.Action.Kind == nil:
			add("action.type: is required; %s", actionTypeChoices())
		default:
			kinds = append(kinds, r.Action.Kind)
		}
		if flat := r.flatActions(); len(flat) > 0 {
			add("action: give the action either as an action object or as the flat field %s, not both", flatNames(flat))
		}
		if _, ok := r.Action.Kind.(*LatencyAction); ok && r.Latency != nil {
			add("latency: not allowed beside a latency action; give the delay once")
		}
	} else {
		kinds = r.flatActions()
	}
	if known {
		for _, k := range kinds {
			if msg := k.endpointProblem(prefix, r.Endpoint); msg != "" {
				p = append(p, msg)
			}
		}
	}
	if r.ErrMsg != "" && r.ErrCode == 0 {
		add("errmsg: only allowed together with a non-zero errcode")
	}
	for _, k := range kinds {
		p = append(p, k.check(prefix)...)
	}
	switch {
	case r.Action != nil:
	case len(kinds) > 1:
		add("rule has more than one action (%s); give exactly one of %s", flatNames(kinds), actionChoices)
	case len(kinds) == 0 && r.Latency == nil && !hadZeroAction:
		add("rule has no effect: give one action (%s) and/or a latency", actionChoices)
	}

	if r.Latency != nil {
		p = append(p, r.Latency.problems("latency")...)
	}

	if r.Probability != nil {
		if v := *r.Probability; !(v >= 0 && v <= 1) { // also catches NaN
			add("probability: must be between 0 and 1 (got %v)", v)
		}
	}
	if r.Skip < 0 {
		add("skip: must not be negative (got %d)", r.Skip)
	}
	if r.Times < 0 {
		add("times: must not be negative (got %d)", r.Times)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"after_ms", r.AfterMS}, {"for_ms", r.ForMS}} {
		switch {
		case f.v < 0:
			add("%s: must not be negative (got %d)", f.name, f.v)
		case int64(f.v) > maxWindowMS:
			add("%s: must be at most %d (365 days) (got %d)", f.name, maxWindowMS, f.v)
		}
	}
	return p
}

// problems lists what is wrong with l, naming it name ("latency" for a
// rule's latency, "action" for a latency action).
func (l *Latency) problems(name string) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	forms := 0
	if l.FixedMS != nil {
		forms++
	}
	if l.MinMS != nil || l.MaxMS != nil {
		forms++
	}
	if l.P50MS != nil || l.P99MS != nil {
		forms++
	}
	if forms != 1 {
		add("%s: give exactly one of fixed_ms, min_ms/max_ms, p50_ms/p99_ms", name)
		return p
	}

	ok := true
	for _, f := range []struct {
		name string
		v    *int
	}{{"fixed_ms", l.FixedMS}, {"min_ms", l.MinMS}, {"max_ms", l.MaxMS}, {"p50_ms", l.P50MS}, {"p99_ms", l.P99MS}} {
		switch {
		case f.v == nil:
		case *f.v < 0:
			add("%s.%s: must not be negative (got %d)", name, f.name, *f.v)
			ok = false
		case *f.v > maxLatencyMS:
			add("%s.%s: must be at most %d (got %d)", name, f.name, maxLatencyMS, *f.v)
			ok = false
		}
	}
	switch {
	case (l.MinMS == nil) != (l.MaxMS == nil):
		add("%s: min_ms and max_ms must be given together", name)
	case (l.P50MS == nil) != (l.P99MS == nil):
		add("%s: p50_ms and p99_ms must be given together", name)
	case !ok:
	case l.MinMS != nil && *l.MinMS > *l.MaxMS:
		add("%s: min_ms must be <= max_ms (got %d > %d)", name, *l.MinMS, *l.MaxMS)
	case l.P50MS != nil && *l.P99MS < *l.P50MS:
		add("%s: p99_ms must be >= p50_ms (got %d < %d)", name, *l.P99MS, *l.P50MS)
	case l.P50MS != nil && *l.P50MS == 0 && *l.P99MS > 0:
		add("%s: p50_ms must be > 0 when p99_ms > 0 (a lognormal needs a positive median)", name)
	}
	return p
}

// sample draws one delay from l; l must be valid. Forms that have a single
// possible value (fixed_ms, min_ms == max_ms, p50_ms == p99_ms) do not draw
// from rng. Lognormal samples are clamped to the 120000 ms latency cap.
func (l *Latency) sample(rng *rand.Rand) time.Duration {
	switch {
	case l.FixedMS != nil:
		return ms(*l.FixedMS)
	case l.MinMS != nil:
		lo, hi := ms(*l.MinMS), ms(*l.MaxMS)
		if lo == hi {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	default:
		p50, p99 := *l.P50MS, *l.P99MS
		if p50 == p99 {
			return ms(p50)
		}
		mu := math.Log(float64(p50))
		sigma := (math.Log(float64(p99)) - mu) / z99
		v := math.Exp(mu + sigma*rng.NormFloat64())
		return time.Duration(min(v, maxLatencyMS) * float64(time.Millisecond))
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// clone returns a copy of l that shares no pointers with it.
func (l *Latency) clone() *Latency {
	c := *l
	for _, p := range []**int{&c.FixedMS, &c.MinMS, &c.MaxMS, &c.P50MS, &c.P99MS} {
		if *p != nil {
			v := **p
			*p = &v
		}
	}
	return &c
}

// clone returns a copy of r that shares no pointers with it.
func (r Rule) clone() Rule {
	if r.Latency != nil {
		r.Latency = r.Latency.clone()
	}
	if r.Action != nil && r.Action.Kind != nil {
		r.Action = &RuleAction{Kind: r.Action.Kind.cloneKind()}
	}
	if r.Probability != nil {
		v := *r.Probability
		r.Probability = &v
	}
	return r
}

// Call describes one incoming call the engine decides on.
type Call struct {
	Endpoint   Endpoint
	AppID      string
	ToUser     string
	TemplateID string
}

// Decision is what the engine decided for a call: the zero value means
// "behave normally".
type Decision struct {
	// RuleIDs lists the rules that fired, in insertion order.
	RuleIDs []string
	// Delay is the largest latency among the rules that fired.
	Delay time.Duration
	// The answer fields are the effect of the first fired rule (in
	// insertion order) whose action answers (every kind but latency); at
	// most one of them is set.
	ErrCode        int
	ErrMsg         string
	HTTPStatus     int
	Fault          FaultKind
	DeliveryStatus string
}

// RuleStatus is a rule as listed by GET /_mock/faults: the rule plus its id,
// when it was added, how many calls it matched, how many times it fired, and
// whether it is active now or exhausted. Active means the rule is inside its
// after_ms/for_ms window and not exhausted, so it can still fire.
type RuleStatus struct {
	ID string `json:"id"`
	Rule
	AddedAt   time.Time `json:"added_at"`
	Matched   int       `json:"matched"`
	Fired     int       `json:"fired"`
	Active    bool      `json:"active"`
	Exhausted bool      `json:"exhausted"`
}

// Engine holds the fault rules and decides, call by call, which of them fire.
// All random choices come from one PCG source seeded at construction, so the
// same seed and the same sequence of calls give the same decisions. Engine is
// safe for concurrent use.
type Engine struct {
	now  func() time.Time
	seed int64

	mu     sync.Mutex
	rng    *rand.Rand
	nextID int
	rules  []*ruleState
}

type ruleState struct {
	id   string
	rule Rule
	// action and delay are the rule's effect (Rule.effect): what the
	// engine runs when the rule fires.
	action  ActionKind
	delay   *Latency
	added   time.Time
	matched int
	fired   int
}

func (s *ruleState) exhausted() bool {
	return s.rule.Times > 0 && s.fired >= s.rule.Times
}

func (s *ruleState) inWindow(now time.Time) bool {
	start := s.added.Add(ms(s.rule.AfterMS))
	if now.Before(start) {
		return false
	}
	return s.rule.ForMS == 0 || now.Before(start.Add(ms(s.rule.ForMS)))
}

func (s *ruleState) applies(c Call) bool {
	r := &s.rule
	switch {
	case r.Endpoint == c.Endpoint:
	case r.Endpoint == EndpointAny && !endpoints[c.Endpoint].push:
		// "*" covers the WeChat API endpoints, not the pushes to the app.
	default:
		return false
	}
	m := r.Match
	return (m.AppID == "" || m.AppID == c.AppID) &&
		(m.ToUser == "" || m.ToUser == c.ToUser) &&
		(m.TemplateID == "" || m.TemplateID == c.TemplateID)
}

// NewEngine returns an empty engine whose random choices derive from seed.
// now supplies the clock for after_ms/for_ms windows; nil means time.Now.
func NewEngine(seed int64, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{now: now, seed: seed, rng: newRand(seed), nextID: 1}
}

func newRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x6d6f636b7778)) // "mockwx"
}

// Add validates r and appends it to the rule list, returning its id ("f1",
// "f2", ... in order of addition). An invalid rule changes nothing.
func (e *Engine) Add(r Rule) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	id := "f" + strconv.Itoa(e.nextID)
	e.nextID++
	st := &ruleState{id: id, rule: r.clone(), added: now}
	st.action, st.delay = st.rule.clone().effect()
	e.rules = append(e.rules, st)
	return id, nil
}

// Remove deletes the rule with the given id and reports whether it existed.
func (e *Engine) Remove(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.rules)
	e.rules = slices.DeleteFunc(e.rules, func(s *ruleState) bool { return s.id == id })
	return len(e.rules) != n
}

// Clear deletes every rule. Id numbering and the random source carry on, so
// ids are never reused; use Reset for a full replayable restart.
func (e *Engine) Clear() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rules = nil
}

// Reset deletes every rule, reseeds the random source with the original seed
// and restarts id numbering at "f1", so a reset engine replays identically.
func (e *Engine) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rules = nil
	e.rng = newRand(e.seed)
	e.nextID = 1
}

// List returns the status of every rule in insertion order. The result shares
// no memory with the engine.
func (e *Engine) List() []RuleStatus {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RuleStatus, 0, len(e.rules))
	for _, s := range e.rules {
		ex := s.exhausted()
		out = append(out, RuleStatus{
			ID:        s.id,
			Rule:      s.rule.clone(),
			AddedAt:   s.added,
			Matched:   s.matched,
			Fired:     s.fired,
			Active:    !ex && s.inWindow(now),
			Exhausted: ex,
		})
	}
	return out
}

// Decide runs the call through the rules in insertion order. A rule applies
// when its endpoint is the call's (or "*" for any WeChat API endpoint;
// pushes need an explicit "callback" or "event" rule), every non-empty
// Match field equals the call's, it is inside its active window and it is not exhausted. An
// applicable rule counts the call as matched; the first Skip matched calls
// pass untouched; after that it fires with its probability (a random number
// is drawn only when the probability is below 1). Every firing rule is
// counted and contributes its sampled latency (Delay is the maximum); the
// first firing rule whose action answers decides the answer. Once it is
// decided, later rules whose action answers are passed over entirely (their
// skip, times and probability budgets are untouched: a shadowed rule waits
// its turn); later latency rules still apply.
func (e *Engine) Decide(c Call) Decision {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	var d Decision
	answered := false
	for _, s := range e.rules {
		answers := s.action.answers()
		if !s.applies(c) || !s.inWindow(now) || s.exhausted() || (answered && answers) {
			continue
		}
		s.matched++
		if s.matched <= s.rule.Skip {
			continue
		}
		if p := s.rule.Probability; p != nil && *p < 1 && e.rng.Float64() >= *p {
			continue
		}
		s.fired++
		d.RuleIDs = append(d.RuleIDs, s.id)
		if s.delay != nil {
			d.Delay = max(d.Delay, s.delay.sample(e.rng))
		}
		s.action.decide(&d, e.rng)
		answered = answered || answers
	}
	return d
}
