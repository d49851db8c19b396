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

// FaultKind is a transport-level failure the mock can inject instead of a
// well-formed answer.
type FaultKind string

// Transport faults a rule can inject.
const (
	// FaultReset closes the connection without writing a response.
	FaultReset FaultKind = "reset"
	// FaultTimeout never answers; the client has to give up on its own.
	FaultTimeout FaultKind = "timeout"
	// FaultMalformed answers HTTP 200 with a body that is not valid JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultEmpty answers HTTP 200 with an empty body.
	FaultEmpty FaultKind = "empty"
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

// Rule is one fault rule as accepted by POST /_mock/faults. A rule has at most
// one action (ErrCode with optional ErrMsg, HTTPStatus, Fault or
// DeliveryStatus); a rule without an action must have a Latency and only
// delays the call.
type Rule struct {
	Endpoint       Endpoint  `json:"endpoint"`
	Match          Match     `json:"match,omitzero"`
	ErrCode        int       `json:"errcode,omitempty"`
	ErrMsg         string    `json:"errmsg,omitempty"`
	HTTPStatus     int       `json:"http_status,omitempty"`
	Fault          FaultKind `json:"fault,omitempty"`
	DeliveryStatus string    `json:"delivery_status,omitempty"`
	Latency        *Latency  `json:"latency,omitempty"`
	Probability    *float64  `json:"probability,omitempty"`
	Skip           int       `json:"skip,omitempty"`
	Times          int       `json:"times,omitempty"`
	AfterMS        int       `json:"after_ms,omitempty"`
	ForMS          int       `json:"for_ms,omitempty"`
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
	faultChoices    = "must be one of reset, timeout, malformed, empty"
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
		if r.Endpoint == EndpointEvent && (r.ErrCode != 0 || r.HTTPStatus != 0) {
			add("%s: not available on endpoint %s, a push to the app (give a fault or a latency)", map[bool]string{true: "errcode", false: "http_status"}[r.ErrCode != 0], r.Endpoint)
		}
	}

	var actions []string
	if r.ErrCode != 0 {
		actions = append(actions, "errcode")
	}
	if r.ErrMsg != "" && r.ErrCode == 0 {
		add("errmsg: only allowed together with a non-zero errcode")
	}
	if r.HTTPStatus != 0 {
		actions = append(actions, "http_status")
		if r.HTTPStatus < 400 || r.HTTPStatus > 599 {
			add("http_status: must be between 400 and 599 (got %d)", r.HTTPStatus)
		}
	}
	if r.Fault != "" {
		actions = append(actions, "fault")
		switch r.Fault {
		case FaultReset, FaultTimeout, FaultMalformed, FaultEmpty:
		default:
			add("fault: %s (got %q)", faultChoices, string(r.Fault))
		}
	}
	if r.DeliveryStatus != "" {
		actions = append(actions, "delivery_status")
		if r.DeliveryStatus != "success" && !strings.HasPrefix(r.DeliveryStatus, "failed") {
			add("delivery_status: %s (got %q)", deliveryChoices, r.DeliveryStatus)
		}
		if r.Endpoint != EndpointTemplateSend && r.Endpoint != EndpointCallback {
			add("delivery_status: only allowed on endpoint template_send or callback (got %q)", string(r.Endpoint))
		}
	}
	switch {
	case len(actions) > 1:
		add("rule has more than one action (%s); give exactly one of %s", strings.Join(actions, ", "), actionChoices)
	case len(actions) == 0 && r.Latency == nil && !hadZeroAction:
		add("rule has no effect: give one action (%s) and/or a latency", actionChoices)
	}

	if r.Latency != nil {
		p = append(p, r.Latency.problems()...)
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

func (l *Latency) problems() []string {
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
		add("latency: give exactly one of fixed_ms, min_ms/max_ms, p50_ms/p99_ms")
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
			add("latency.%s: must not be negative (got %d)", f.name, *f.v)
			ok = false
		case *f.v > maxLatencyMS:
			add("latency.%s: must be at most %d (got %d)", f.name, maxLatencyMS, *f.v)
			ok = false
		}
	}
	switch {
	case (l.MinMS == nil) != (l.MaxMS == nil):
		add("latency: min_ms and max_ms must be given together")
	case (l.P50MS == nil) != (l.P99MS == nil):
		add("latency: p50_ms and p99_ms must be given together")
	case !ok:
	case l.MinMS != nil && *l.MinMS > *l.MaxMS:
		add("latency: min_ms must be <= max_ms (got %d > %d)", *l.MinMS, *l.MaxMS)
	case l.P50MS != nil && *l.P99MS < *l.P50MS:
		add("latency: p99_ms must be >= p50_ms (got %d < %d)", *l.P99MS, *l.P50MS)
	case l.P50MS != nil && *l.P50MS == 0 && *l.P99MS > 0:
		add("latency: p50_ms must be > 0 when p99_ms > 0 (a lognormal needs a positive median)")
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

// clone returns a copy of r that shares no pointers with it.
func (r Rule) clone() Rule {
	if r.Latency != nil {
		l := *r.Latency
		for _, p := range []**int{&l.FixedMS, &l.MinMS, &l.MaxMS, &l.P50MS, &l.P99MS} {
			if *p != nil {
				v := **p
				*p = &v
			}
		}
		r.Latency = &l
	}
	if r.Probability != nil {
		v := *r.Probability
		r.Probability = &v
	}
	return r
}

func (r Rule) hasAction() bool {
	return r.ErrCode != 0 || r.HTTPStatus != 0 || r.Fault != "" || r.DeliveryStatus != ""
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
	// The action fields come from the first fired rule (in insertion order)
	// that has an action; at most one of them is set.
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
	id      string
	rule    Rule
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
	e.rules = append(e.rules, &ruleState{id: id, rule: r.clone(), added: now})
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
// first firing rule that has an action decides the action. Once an action is
// decided, later rules with an action are passed over entirely (their skip,
// times and probability budgets are untouched: a shadowed rule waits its
// turn); later latency-only rules still apply.
func (e *Engine) Decide(c Call) Decision {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	var d Decision
	haveAction := false
	for _, s := range e.rules {
		if !s.applies(c) || !s.inWindow(now) || s.exhausted() || (haveAction && s.rule.hasAction()) {
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
		if s.rule.Latency != nil {
			d.Delay = max(d.Delay, s.rule.Latency.sample(e.rng))
		}
		if !haveAction && s.rule.hasAction() {
			haveAction = true
			d.ErrCode = s.rule.ErrCode
			d.ErrMsg = s.rule.ErrMsg
			d.HTTPStatus = s.rule.HTTPStatus
			d.Fault = s.rule.Fault
			d.DeliveryStatus = s.rule.DeliveryStatus
		}
	}
	return d
}
