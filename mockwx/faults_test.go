package mockwx

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultClock is a manually advanced clock for window tests.
type faultClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFaultClock() *faultClock {
	return &faultClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *faultClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *faultClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// faultEq reports a test error when got and want differ (deeply).
func faultEq[T any](t *testing.T, got, want T, what string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot  %s\nwant %s", what, faultShow(got), faultShow(want))
	}
}

// faultShow renders v readably, following pointers.
func faultShow(v any) string {
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprintf("%+v", v)
}

func mustAddRule(t *testing.T, e *Engine, r Rule) string {
	t.Helper()
	id, err := e.Add(r)
	if err != nil {
		t.Fatalf("Add(%s): %v", faultShow(r), err)
	}
	return id
}

func mustAddJSON(t *testing.T, e *Engine, js string) string {
	t.Helper()
	r, err := ParseRule([]byte(js))
	if err != nil {
		t.Fatalf("ParseRule(%s): %v", js, err)
	}
	return mustAddRule(t, e, r)
}

func firedSeq(e *Engine, c Call, n int) string {
	var b strings.Builder
	for range n {
		d := e.Decide(c)
		if d.ErrCode != 0 || d.HTTPStatus != 0 || d.Fault != "" || d.DeliveryStatus != "" {
			b.WriteByte('x')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func TestParseRuleValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Rule
	}{
		{
			name: "errcode",
			in:   `{"endpoint":"token","errcode":40001}`,
			want: Rule{Endpoint: EndpointToken, ErrCode: 40001},
		},
		{
			name: "negative errcode with errmsg",
			in:   `{"endpoint":"stable_token","errcode":-1,"errmsg":"system error"}`,
			want: Rule{Endpoint: EndpointStableToken, ErrCode: -1, ErrMsg: "system error"},
		},
		{
			name: "http status with match",
			in:   `{"endpoint":"template_send","match":{"appid":"wx1","touser":"o1","template_id":"t1"},"http_status":503}`,
			want: Rule{Endpoint: EndpointTemplateSend, Match: Match{AppID: "wx1", ToUser: "o1", TemplateID: "t1"}, HTTPStatus: 503},
		},
		{
			name: "appid match on token",
			in:   `{"endpoint":"token","match":{"appid":"wx1"},"http_status":400}`,
			want: Rule{Endpoint: EndpointToken, Match: Match{AppID: "wx1"}, HTTPStatus: 400},
		},
		{
			name: "fault on any endpoint",
			in:   `{"endpoint":"*","fault":"reset"}`,
			want: Rule{Endpoint: EndpointAny, Fault: FaultReset},
		},
		{name: "fault timeout", in: `{"endpoint":"token","fault":"timeout"}`, want: Rule{Endpoint: EndpointToken, Fault: FaultTimeout}},
		{name: "fault malformed", in: `{"endpoint":"token","fault":"malformed"}`, want: Rule{Endpoint: EndpointToken, Fault: FaultMalformed}},
		{name: "fault empty", in: `{"endpoint":"callback","fault":"empty"}`, want: Rule{Endpoint: EndpointCallback, Fault: FaultEmpty}},
		{
			name: "delivery success on template_send",
			in:   `{"endpoint":"template_send","delivery_status":"success"}`,
			want: Rule{Endpoint: EndpointTemplateSend, DeliveryStatus: "success"},
		},
		{
			name: "delivery user block",
			in:   `{"endpoint":"template_send","delivery_status":"failed:user block"}`,
			want: Rule{Endpoint: EndpointTemplateSend, DeliveryStatus: "failed:user block"},
		},
		{
			name: "delivery system failed on callback",
			in:   `{"endpoint":"callback","delivery_status":"failed: system failed"}`,
			want: Rule{Endpoint: EndpointCallback, DeliveryStatus: "failed: system failed"},
		},
		{
			name: "delivery custom failed",
			in:   `{"endpoint":"callback","delivery_status":"failed:freq limit"}`,
			want: Rule{Endpoint: EndpointCallback, DeliveryStatus: "failed:freq limit"},
		},
		{
			name: "latency only fixed",
			in:   `{"endpoint":"token","latency":{"fixed_ms":250}}`,
			want: Rule{Endpoint: EndpointToken, Latency: &Latency{FixedMS: new(250)}},
		},
		{
			name: "latency fixed zero",
			in:   `{"endpoint":"token","latency":{"fixed_ms":0}}`,
			want: Rule{Endpoint: EndpointToken, Latency: &Latency{FixedMS: new(0)}},
		},
		{
			name: "latency uniform with action",
			in:   `{"endpoint":"token","errcode":45009,"latency":{"min_ms":10,"max_ms":20}}`,
			want: Rule{Endpoint: EndpointToken, ErrCode: 45009, Latency: &Latency{MinMS: new(10), MaxMS: new(20)}},
		},
		{
			name: "latency lognormal at cap",
			in:   `{"endpoint":"*","latency":{"p50_ms":100,"p99_ms":120000}}`,
			want: Rule{Endpoint: EndpointAny, Latency: &Latency{P50MS: new(100), P99MS: new(120000)}},
		},
		{
			name: "latency lognormal degenerate zero",
			in:   `{"endpoint":"*","latency":{"p50_ms":0,"p99_ms":0}}`,
			want: Rule{Endpoint: EndpointAny, Latency: &Latency{P50MS: new(0), P99MS: new(0)}},
		},
		{
			name: "all modifiers",
			in:   `{"endpoint":"token","errcode":40001,"probability":0.25,"skip":2,"times":3,"after_ms":1000,"for_ms":5000}`,
			want: Rule{Endpoint: EndpointToken, ErrCode: 40001, Probability: new(0.25), Skip: 2, Times: 3, AfterMS: 1000, ForMS: 5000},
		},
		{
			name: "explicit zeros and empty match",
			in:   `{"endpoint":"token","errcode":1,"probability":0,"skip":0,"times":0,"after_ms":0,"for_ms":0,"match":{}}`,
			want: Rule{Endpoint: EndpointToken, ErrCode: 1, Probability: new(0.0)},
		},
		{
			name: "probability one",
			in:   `{"endpoint":"token","errcode":1,"probability":1}`,
			want: Rule{Endpoint: EndpointToken, ErrCode: 1, Probability: new(1.0)},
		},
		{
			name: "nulls and surrounding whitespace",
			in:   " \n{\"endpoint\":\"token\",\"errcode\":1,\"errmsg\":null,\"latency\":null,\"probability\":null,\"match\":null,\"http_status\":null,\"fault\":null,\"delivery_status\":null}\n ",
			want: Rule{Endpoint: EndpointToken, ErrCode: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRule([]byte(tc.in))
			if err != nil {
				t.Fatalf("ParseRule: got error %v, want nil", err)
			}
			faultEq(t, got, tc.want, "rule")
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: got %v, want nil", err)
			}
		})
	}
}

func TestParseRuleInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings the error must contain
	}{
		{"empty input", ``, []string{"empty input"}},
		{"not an object", `[1]`, []string{"invalid rule JSON"}},
		{"truncated", `{"endpoint":"token"`, []string{"invalid rule JSON"}},
		{"trailing data", `{"endpoint":"token","errcode":1} {}`, []string{"unexpected data after the rule object"}},
		{"trailing garbage", `{"endpoint":"token","errcode":1}}`, []string{"unexpected data after the rule object"}},
		{"null", `null`, []string{"endpoint: is required"}},
		{"missing endpoint", `{"errcode":1}`, []string{"endpoint: is required; must be one of token, stable_token, template_send, user_info, user_get, template_list, custom_send, callback, event, *"}},
		{"bad endpoint", `{"endpoint":"menu","errcode":1}`, []string{"endpoint: must be one of token, stable_token, template_send, user_info, user_get, template_list, custom_send, callback, event, *", `"menu"`}},
		{"unknown field", `{"endpoint":"token","errcode":1,"errcod":2}`, []string{`unknown field "errcod"`}},
		{"unknown match field", `{"endpoint":"token","errcode":1,"match":{"openid":"x"}}`, []string{`unknown field "openid"`}},
		{"unknown latency field", `{"endpoint":"token","latency":{"mean_ms":3}}`, []string{`unknown field "mean_ms"`}},
		{"wrong type", `{"endpoint":"token","errcode":"40001"}`, []string{"errcode"}},
		{"float for int", `{"endpoint":"token","errcode":1,"skip":1.5}`, []string{"skip"}},
		{"errcode zero", `{"endpoint":"token","errcode":0}`, []string{"errcode: must be non-zero"}},
		{"errcode zero with latency", `{"endpoint":"token","errcode":0,"latency":{"fixed_ms":1}}`, []string{"errcode: must be non-zero"}},
		{"errcode zero beside other action", `{"endpoint":"token","errcode":0,"http_status":500}`, []string{"errcode: must be non-zero"}},
		{"errmsg without errcode", `{"endpoint":"token","errmsg":"x","http_status":500}`, []string{"errmsg:"}},
		{"http status too low", `{"endpoint":"token","http_status":200}`, []string{"http_status: must be between 400 and 599"}},
		{"http status too high", `{"endpoint":"token","http_status":600}`, []string{"http_status: must be between 400 and 599"}},
		{"http status zero", `{"endpoint":"token","http_status":0}`, []string{"http_status: must be between 400 and 599"}},
		{"http status negative", `{"endpoint":"token","http_status":-500}`, []string{"http_status: must be between 400 and 599"}},
		{"bad fault", `{"endpoint":"token","fault":"drop"}`, []string{"fault: must be one of reset, timeout, malformed, empty"}},
		{"empty fault", `{"endpoint":"token","fault":""}`, []string{"fault: must be one of"}},
		{"bad delivery status", `{"endpoint":"callback","delivery_status":"ok"}`, []string{"delivery_status: must be"}},
		{"empty delivery status", `{"endpoint":"callback","delivery_status":""}`, []string{"delivery_status: must be"}},
		{"delivery on token", `{"endpoint":"token","delivery_status":"success"}`, []string{"delivery_status: only allowed on endpoint template_send or callback"}},
		{"delivery on any", `{"endpoint":"*","delivery_status":"failed:user block"}`, []string{"delivery_status: only allowed on endpoint"}},
		{"two actions", `{"endpoint":"token","errcode":1,"fault":"reset"}`, []string{"more than one action", "errcode, fault"}},
		{"four actions", `{"endpoint":"template_send","errcode":1,"http_status":500,"fault":"reset","delivery_status":"success"}`, []string{"errcode, http_status, fault, delivery_status"}},
		{"no action", `{"endpoint":"token"}`, []string{"no effect", "latency"}},
		{"no action only modifiers", `{"endpoint":"token","times":3,"probability":0.5}`, []string{"no effect"}},
		{"touser on token", `{"endpoint":"token","match":{"touser":"o1"},"errcode":1}`, []string{"match.touser:"}},
		{"template_id on stable_token", `{"endpoint":"stable_token","match":{"template_id":"t"},"errcode":1}`, []string{"match.template_id:"}},
		{"probability above 1", `{"endpoint":"token","errcode":1,"probability":1.5}`, []string{"probability: must be between 0 and 1"}},
		{"probability negative", `{"endpoint":"token","errcode":1,"probability":-0.1}`, []string{"probability: must be between 0 and 1"}},
		{"probability overflow", `{"endpoint":"token","errcode":1,"probability":1e400}`, []string{"probability"}},
		{"skip negative", `{"endpoint":"token","errcode":1,"skip":-1}`, []string{"skip: must not be negative"}},
		{"times negative", `{"endpoint":"token","errcode":1,"times":-1}`, []string{"times: must not be negative"}},
		{"after negative", `{"endpoint":"token","errcode":1,"after_ms":-1}`, []string{"after_ms: must not be negative"}},
		{"for negative", `{"endpoint":"token","errcode":1,"for_ms":-1}`, []string{"for_ms: must not be negative"}},
		{"after too large", `{"endpoint":"token","errcode":1,"after_ms":31536000001}`, []string{"after_ms: must be at most"}},
		{"for too large", `{"endpoint":"token","errcode":1,"for_ms":9223372036854775807}`, []string{"for_ms: must be at most"}},
		{"latency empty", `{"endpoint":"token","latency":{}}`, []string{"latency: give exactly one of fixed_ms, min_ms/max_ms, p50_ms/p99_ms"}},
		{"latency two forms", `{"endpoint":"token","latency":{"fixed_ms":1,"min_ms":1,"max_ms":2}}`, []string{"latency: give exactly one of"}},
		{"latency three forms", `{"endpoint":"token","latency":{"fixed_ms":1,"max_ms":2,"p99_ms":3}}`, []string{"latency: give exactly one of"}},
		{"latency min only", `{"endpoint":"token","latency":{"min_ms":1}}`, []string{"latency: min_ms and max_ms must be given together"}},
		{"latency p99 only", `{"endpoint":"token","latency":{"p99_ms":1}}`, []string{"latency: p50_ms and p99_ms must be given together"}},
		{"latency min above max", `{"endpoint":"token","latency":{"min_ms":5,"max_ms":4}}`, []string{"min_ms must be <= max_ms"}},
		{"latency p99 below p50", `{"endpoint":"token","latency":{"p50_ms":50,"p99_ms":40}}`, []string{"p99_ms must be >= p50_ms"}},
		{"latency p50 zero", `{"endpoint":"token","latency":{"p50_ms":0,"p99_ms":40}}`, []string{"latency: p50_ms must be > 0"}},
		{"latency negative", `{"endpoint":"token","latency":{"fixed_ms":-1}}`, []string{"latency.fixed_ms: must not be negative"}},
		{"latency min negative", `{"endpoint":"token","latency":{"min_ms":-5,"max_ms":10}}`, []string{"latency.min_ms: must not be negative"}},
		{"latency over cap", `{"endpoint":"token","latency":{"fixed_ms":120001}}`, []string{"latency.fixed_ms: must be at most 120000"}},
		{"latency max over cap", `{"endpoint":"token","latency":{"min_ms":0,"max_ms":200000}}`, []string{"latency.max_ms: must be at most 120000"}},
		{"latency p99 over cap", `{"endpoint":"token","latency":{"p50_ms":10,"p99_ms":120001}}`, []string{"latency.p99_ms: must be at most 120000"}},
		{"several problems", `{"endpoint":"x","errcode":1,"probability":2,"skip":-1}`, []string{"endpoint:", "probability:", "skip:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRule([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParseRule: got nil error and %s, want an error", faultShow(got))
			}
			faultEq(t, got, Rule{}, "rule returned with the error")
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error: got %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestValidateGoValues(t *testing.T) {
	zero := 0.0
	tests := []struct {
		name string
		rule Rule
		want string // "" means valid
	}{
		{"valid", Rule{Endpoint: EndpointToken, ErrCode: 1}, ""},
		{"zero rule", Rule{}, "endpoint: is required"},
		{"errmsg alone", Rule{Endpoint: EndpointToken, ErrMsg: "x"}, "errmsg: only allowed together with a non-zero errcode"},
		{"NaN probability", Rule{Endpoint: EndpointToken, ErrCode: 1, Probability: new(zero / zero)}, "probability: must be between 0 and 1"},
		{"empty latency", Rule{Endpoint: EndpointToken, Latency: &Latency{}}, "latency: give exactly one of"},
		{"http status 399", Rule{Endpoint: EndpointToken, HTTPStatus: 399}, "http_status: must be between 400 and 599"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.want != "" && err == nil:
				t.Errorf("got nil, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestAddInvalidChangesNothing(t *testing.T) {
	e := NewEngine(1, nil)
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 1})
	before := e.List()

	id, err := e.Add(Rule{Endpoint: "nope", ErrCode: 1})
	if err == nil || id != "" {
		t.Fatalf("Add(invalid): got (%q, %v), want (\"\", error)", id, err)
	}
	faultEq(t, e.List(), before, "List after a rejected Add")

	id = mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 2})
	faultEq(t, id, "f2", "id after a rejected Add")
}

func TestAddAndListCopyRules(t *testing.T) {
	e := NewEngine(1, nil)
	r := Rule{Endpoint: EndpointToken, Latency: &Latency{FixedMS: new(10)}, Probability: new(1.0)}
	mustAddRule(t, e, r)
	*r.Latency.FixedMS = 99999
	*r.Probability = 0

	listed := e.List()
	*listed[0].Latency.FixedMS = 5

	d := e.Decide(Call{Endpoint: EndpointToken})
	faultEq(t, d.Delay, 10*time.Millisecond, "delay")
	faultEq(t, *e.List()[0].Latency.FixedMS, 10, "stored fixed_ms")
}

func TestDecideEndpointAndMatch(t *testing.T) {
	tests := []struct {
		name  string
		rule  Rule
		call  Call
		fires bool
	}{
		{"same endpoint", Rule{Endpoint: EndpointToken, ErrCode: 1}, Call{Endpoint: EndpointToken}, true},
		{"other endpoint", Rule{Endpoint: EndpointToken, ErrCode: 1}, Call{Endpoint: EndpointStableToken}, false},
		{"callback rule ignores template_send", Rule{Endpoint: EndpointCallback, ErrCode: 1}, Call{Endpoint: EndpointTemplateSend}, false},
		{"any matches token", Rule{Endpoint: EndpointAny, ErrCode: 1}, Call{Endpoint: EndpointToken}, true},
		{"any does not match callback", Rule{Endpoint: EndpointAny, Fault: FaultReset}, Call{Endpoint: EndpointCallback}, false},
		{"callback matches callback", Rule{Endpoint: EndpointCallback, Fault: FaultReset}, Call{Endpoint: EndpointCallback}, true},
		{"appid equal", Rule{Endpoint: EndpointToken, Match: Match{AppID: "wx1"}, ErrCode: 1}, Call{Endpoint: EndpointToken, AppID: "wx1"}, true},
		{"appid differs", Rule{Endpoint: EndpointToken, Match: Match{AppID: "wx1"}, ErrCode: 1}, Call{Endpoint: EndpointToken, AppID: "wx2"}, false},
		{"appid missing on call", Rule{Endpoint: EndpointToken, Match: Match{AppID: "wx1"}, ErrCode: 1}, Call{Endpoint: EndpointToken}, false},
		{
			"all match fields equal",
			Rule{Endpoint: EndpointTemplateSend, Match: Match{AppID: "wx1", ToUser: "o1", TemplateID: "t1"}, ErrCode: 43004},
			Call{Endpoint: EndpointTemplateSend, AppID: "wx1", ToUser: "o1", TemplateID: "t1"},
			true,
		},
		{
			"touser differs",
			Rule{Endpoint: EndpointTemplateSend, Match: Match{AppID: "wx1", ToUser: "o1", TemplateID: "t1"}, ErrCode: 43004},
			Call{Endpoint: EndpointTemplateSend, AppID: "wx1", ToUser: "o2", TemplateID: "t1"},
			false,
		},
		{
			"template differs",
			Rule{Endpoint: EndpointTemplateSend, Match: Match{TemplateID: "t1"}, ErrCode: 40037},
			Call{Endpoint: EndpointTemplateSend, AppID: "wx1", ToUser: "o1", TemplateID: "t2"},
			false,
		},
		{
			"empty match fields are wildcards",
			Rule{Endpoint: EndpointTemplateSend, Match: Match{ToUser: "o1"}, ErrCode: 43004},
			Call{Endpoint: EndpointTemplateSend, AppID: "any", ToUser: "o1", TemplateID: "any"},
			true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(1, nil)
			id := mustAddRule(t, e, tc.rule)
			got := e.Decide(tc.call)
			want, wantMatched := Decision{}, 0
			if tc.fires {
				wantMatched = 1
				want = Decision{
					RuleIDs:    []string{id},
					ErrCode:    tc.rule.ErrCode,
					HTTPStatus: tc.rule.HTTPStatus,
					Fault:      tc.rule.Fault,
				}
			}
			faultEq(t, got, want, "decision")
			faultEq(t, e.List()[0].Matched, wantMatched, "matched")
		})
	}
}

func TestDecideActions(t *testing.T) {
	tests := []struct {
		name string
		rule string
		want Decision
	}{
		{
			"errcode",
			`{"endpoint":"template_send","errcode":45009,"errmsg":"reach max api daily quota limit"}`,
			Decision{RuleIDs: []string{"f1"}, ErrCode: 45009, ErrMsg: "reach max api daily quota limit"},
		},
		{"http status", `{"endpoint":"template_send","http_status":502}`, Decision{RuleIDs: []string{"f1"}, HTTPStatus: 502}},
		{"fault", `{"endpoint":"template_send","fault":"malformed"}`, Decision{RuleIDs: []string{"f1"}, Fault: FaultMalformed}},
		{
			"delivery",
			`{"endpoint":"template_send","delivery_status":"failed:user block"}`,
			Decision{RuleIDs: []string{"f1"}, DeliveryStatus: "failed:user block"},
		},
		{"latency only", `{"endpoint":"template_send","latency":{"fixed_ms":30}}`, Decision{RuleIDs: []string{"f1"}, Delay: 30 * time.Millisecond}},
		{
			"action plus latency",
			`{"endpoint":"template_send","fault":"timeout","latency":{"fixed_ms":7}}`,
			Decision{RuleIDs: []string{"f1"}, Fault: FaultTimeout, Delay: 7 * time.Millisecond},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(1, nil)
			mustAddJSON(t, e, tc.rule)
			got := e.Decide(Call{Endpoint: EndpointTemplateSend})
			faultEq(t, got, tc.want, "decision")
		})
	}
}

func TestDecideFirstActionWinsMaxDelay(t *testing.T) {
	e := NewEngine(1, nil)
	for _, js := range []string{
		`{"endpoint":"*","latency":{"fixed_ms":50}}`,                                 // f1
		`{"endpoint":"stable_token","errcode":1}`,                                    // f2: other endpoint
		`{"endpoint":"token","errcode":40001,"latency":{"fixed_ms":20}}`,             // f3: first action
		`{"endpoint":"token","http_status":500,"latency":{"fixed_ms":80}}`,           // f4: shadowed by f3
		`{"endpoint":"*","latency":{"fixed_ms":10}}`,                                 // f5
		`{"endpoint":"token","match":{"appid":"other"},"latency":{"fixed_ms":1000}}`, // f6: no match
	} {
		mustAddJSON(t, e, js)
	}

	got := e.Decide(Call{Endpoint: EndpointToken, AppID: "wx1"})
	want := Decision{
		RuleIDs: []string{"f1", "f3", "f5"},
		Delay:   50 * time.Millisecond,
		ErrCode: 40001,
	}
	faultEq(t, got, want, "decision")

	fired := map[string]int{}
	for _, s := range e.List() {
		fired[s.ID] = s.Fired
	}
	faultEq(t, fired, map[string]int{"f1": 1, "f2": 0, "f3": 1, "f4": 0, "f5": 1, "f6": 0}, "fired counts")
}

func TestDecideShadowedRuleWaitsItsTurn(t *testing.T) {
	e := NewEngine(1, nil)
	mustAddJSON(t, e, `{"endpoint":"template_send","errcode":-1,"times":1}`)
	mustAddJSON(t, e, `{"endpoint":"template_send","errcode":45011,"times":1}`)
	var got []int
	for range 3 {
		got = append(got, e.Decide(Call{Endpoint: EndpointTemplateSend}).ErrCode)
	}
	faultEq(t, got, []int{-1, 45011, 0}, "errcodes of three calls")
}

func TestDecideSkipAndTimes(t *testing.T) {
	tests := []struct {
		name  string
		skip  int
		times int
		want  string // one char per call: x fired, . passed
	}{
		{"plain", 0, 0, "xxxxx"},
		{"skip 2", 2, 0, "..xxx"},
		{"times 2", 0, 2, "xx..."},
		{"skip 1 times 2", 1, 2, ".xx.."},
		{"skip beyond calls", 10, 1, "....."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(1, nil)
			mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 40001, Skip: tc.skip, Times: tc.times})
			got := firedSeq(e, Call{Endpoint: EndpointToken}, len(tc.want))
			faultEq(t, got, tc.want, "fired sequence")
		})
	}
}

func TestListStatus(t *testing.T) {
	clk := newFaultClock()
	e := NewEngine(1, clk.Now)
	added := clk.Now()
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 40001, Skip: 1, Times: 2})
	mustAddRule(t, e, Rule{Endpoint: EndpointStableToken, Fault: FaultReset, AfterMS: 1000})
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, Latency: &Latency{FixedMS: new(1)}, Probability: new(0.0)})

	firedSeq(e, Call{Endpoint: EndpointToken}, 5)
	got := e.List()
	want := []RuleStatus{
		{
			ID:      "f1",
			Rule:    Rule{Endpoint: EndpointToken, ErrCode: 40001, Skip: 1, Times: 2},
			AddedAt: added, Matched: 3, Fired: 2, Active: false, Exhausted: true,
		},
		{
			ID:      "f2",
			Rule:    Rule{Endpoint: EndpointStableToken, Fault: FaultReset, AfterMS: 1000},
			AddedAt: added, Matched: 0, Fired: 0, Active: false, Exhausted: false,
		},
		{
			ID:      "f3",
			Rule:    Rule{Endpoint: EndpointToken, Latency: &Latency{FixedMS: new(1)}, Probability: new(0.0)},
			AddedAt: added, Matched: 5, Fired: 0, Active: true, Exhausted: false,
		},
	}
	faultEq(t, got, want, "List")

	clk.Set(added.Add(time.Second))
	faultEq(t, e.List()[1].Active, true, "f2 active after after_ms")

	// The embedded rule's fields appear at the top level of the JSON.
	b, err := json.Marshal(e.List()[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"active", "added_at", "endpoint", "errcode", "exhausted", "fired", "id", "matched", "skip", "times"}
	faultEq(t, keys, wantKeys, "JSON keys of a RuleStatus")
}

func TestRemoveAndClear(t *testing.T) {
	e := NewEngine(1, nil)
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 1})
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 2})
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 3})

	faultEq(t, e.Remove("f2"), true, "Remove(f2)")
	faultEq(t, e.Remove("f2"), false, "Remove(f2) again")
	faultEq(t, e.Remove("nope"), false, "Remove(nope)")

	var ids []string
	for _, s := range e.List() {
		ids = append(ids, s.ID)
	}
	faultEq(t, ids, []string{"f1", "f3"}, "ids after Remove")
	faultEq(t, e.Decide(Call{Endpoint: EndpointToken}).ErrCode, 1, "errcode")

	e.Clear()
	faultEq(t, len(e.List()), 0, "rules after Clear")
	faultEq(t, e.Decide(Call{Endpoint: EndpointToken}), Decision{}, "decision after Clear")
	faultEq(t, mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 1}), "f4", "id after Clear")
}

func TestDecideProbability(t *testing.T) {
	const calls = 10000
	run := func(seed int64) string {
		e := NewEngine(seed, nil)
		mustAddJSON(t, e, `{"endpoint":"template_send","errcode":45009,"probability":0.2}`)
		seq := firedSeq(e, Call{Endpoint: EndpointTemplateSend}, calls)
		st := e.List()[0]
		faultEq(t, st.Matched, calls, "matched")
		faultEq(t, st.Fired, strings.Count(seq, "x"), "fired")
		return seq
	}

	a := run(42)
	if got := strings.Count(a, "x"); got < 1800 || got > 2200 {
		t.Errorf("fired: got %d of %d, want 1800..2200", got, calls)
	}
	if got := run(42); got != a {
		t.Error("same seed and calls: got a different fired sequence, want the same")
	}
	if got := run(43); got == a {
		t.Error("different seed: got the same fired sequence, want a different one")
	}
}

func TestDecideProbabilityZero(t *testing.T) {
	e := NewEngine(1, nil)
	mustAddJSON(t, e, `{"endpoint":"token","errcode":1,"probability":0}`)
	got := firedSeq(e, Call{Endpoint: EndpointToken}, 1000)
	faultEq(t, got, strings.Repeat(".", 1000), "fired sequence")
	faultEq(t, e.List()[0].Matched, 1000, "matched")
}

func TestProbabilityOneDrawsNothing(t *testing.T) {
	// Engine b has extra rules with probability 1 (explicit and default)
	// whose latency has a single possible value; none of them may consume
	// random numbers, so the 0.5 rule must fire on exactly the same calls.
	a := NewEngine(7, nil)
	b := NewEngine(7, nil)
	mustAddJSON(t, b, `{"endpoint":"*","latency":{"fixed_ms":1},"probability":1}`)
	mustAddJSON(t, b, `{"endpoint":"*","latency":{"min_ms":3,"max_ms":3}}`)
	mustAddJSON(t, b, `{"endpoint":"*","latency":{"p50_ms":4,"p99_ms":4}}`)
	mustAddJSON(t, a, `{"endpoint":"token","errcode":1,"probability":0.5}`)
	mustAddJSON(t, b, `{"endpoint":"token","errcode":1,"probability":0.5}`)

	c := Call{Endpoint: EndpointToken}
	faultEq(t, firedSeq(b, c, 1000), firedSeq(a, c, 1000), "fired sequence")
}

func TestDecideWindows(t *testing.T) {
	type step struct {
		at    int // ms since the rule was added
		fires bool
	}
	tests := []struct {
		name    string
		afterMS int
		forMS   int
		steps   []step
	}{
		{"forever", 0, 0, []step{{0, true}, {1_000_000, true}}},
		{"after", 500, 0, []step{{0, false}, {499, false}, {500, true}, {100_000, true}}},
		{"for", 0, 300, []step{{0, true}, {299, true}, {300, false}, {5000, false}}},
		{"after and for", 1000, 200, []step{{0, false}, {999, false}, {1000, true}, {1199, true}, {1200, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFaultClock()
			e := NewEngine(1, clk.Now)
			start := clk.Now()
			mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 40001, AfterMS: tc.afterMS, ForMS: tc.forMS})
			for _, st := range tc.steps {
				clk.Set(start.Add(time.Duration(st.at) * time.Millisecond))
				faultEq(t, e.List()[0].Active, st.fires, fmt.Sprintf("Active at %d ms", st.at))
				got := e.Decide(Call{Endpoint: EndpointToken}).ErrCode != 0
				faultEq(t, got, st.fires, fmt.Sprintf("fired at %d ms", st.at))
			}
		})
	}
}

func TestDecideOutsideWindowDoesNotCount(t *testing.T) {
	// Calls before the window opens are not matched, so they use up no skip.
	clk := newFaultClock()
	e := NewEngine(1, clk.Now)
	start := clk.Now()
	mustAddRule(t, e, Rule{Endpoint: EndpointToken, ErrCode: 1, Skip: 1, AfterMS: 100})
	c := Call{Endpoint: EndpointToken}
	faultEq(t, firedSeq(e, c, 3), "...", "before the window")
	faultEq(t, e.List()[0].Matched, 0, "matched before the window")
	clk.Set(start.Add(100 * time.Millisecond))
	faultEq(t, firedSeq(e, c, 2), ".x", "in the window")
}

func sampleFaultDelays(t *testing.T, seed int64, latency string, n int) []time.Duration {
	t.Helper()
	e := NewEngine(seed, nil)
	mustAddJSON(t, e, fmt.Sprintf(`{"endpoint":"token","latency":%s}`, latency))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = e.Decide(Call{Endpoint: EndpointToken}).Delay
	}
	slices.Sort(out)
	return out
}

func TestLatencySampling(t *testing.T) {
	const ms = time.Millisecond
	inRange := func(t *testing.T, what string, got, lo, hi time.Duration) {
		t.Helper()
		if got < lo || got > hi {
			t.Errorf("%s: got %v, want %v..%v", what, got, lo, hi)
		}
	}
	t.Run("fixed", func(t *testing.T) {
		got := sampleFaultDelays(t, 1, `{"fixed_ms":15}`, 100)
		faultEq(t, got[0], 15*ms, "min")
		faultEq(t, got[len(got)-1], 15*ms, "max")
	})
	t.Run("uniform within bounds", func(t *testing.T) {
		got := sampleFaultDelays(t, 1, `{"min_ms":100,"max_ms":200}`, 10000)
		inRange(t, "smallest", got[0], 100*ms, 101*ms)
		inRange(t, "largest", got[len(got)-1], 199*ms, 200*ms)
		inRange(t, "median", got[len(got)/2], 145*ms, 155*ms)
	})
	t.Run("uniform degenerate", func(t *testing.T) {
		got := sampleFaultDelays(t, 1, `{"min_ms":40,"max_ms":40}`, 100)
		faultEq(t, got[0], 40*ms, "min")
		faultEq(t, got[len(got)-1], 40*ms, "max")
	})
	t.Run("lognormal median and p99", func(t *testing.T) {
		got := sampleFaultDelays(t, 1, `{"p50_ms":100,"p99_ms":1000}`, 20000)
		inRange(t, "median", got[len(got)/2], 90*ms, 110*ms)
		inRange(t, "p99", got[len(got)*99/100], 750*ms, 1300*ms)
		inRange(t, "smallest", got[0], 1, 100*ms)
	})
	t.Run("lognormal clamped to cap", func(t *testing.T) {
		got := sampleFaultDelays(t, 1, `{"p50_ms":60000,"p99_ms":120000}`, 5000)
		faultEq(t, got[len(got)-1], 120*time.Second, "largest (clamped)")
	})
	t.Run("lognormal degenerate", func(t *testing.T) {
		got := sampleFaultDelays(t, 1, `{"p50_ms":25,"p99_ms":25}`, 100)
		faultEq(t, got[0], 25*ms, "min")
		faultEq(t, got[len(got)-1], 25*ms, "max")
	})
}

// faultScenario adds a mix of rules to e and returns the decisions for a
// fixed sequence of calls.
func faultScenario(t *testing.T, e *Engine) []Decision {
	t.Helper()
	mustAddJSON(t, e, `{"endpoint":"*","latency":{"p50_ms":20,"p99_ms":400},"probability":0.7}`)
	mustAddJSON(t, e, `{"endpoint":"token","errcode":-1,"errmsg":"system error","probability":0.3,"times":50}`)
	mustAddJSON(t, e, `{"endpoint":"template_send","http_status":503,"probability":0.1,"skip":5}`)
	mustAddJSON(t, e, `{"endpoint":"template_send","match":{"touser":"o2"},"delivery_status":"failed:user block","latency":{"min_ms":1,"max_ms":9}}`)
	var out []Decision
	for i := range 2000 {
		c := Call{Endpoint: EndpointTemplateSend, AppID: "wx1", ToUser: fmt.Sprintf("o%d", i%3), TemplateID: "t1"}
		if i%4 == 0 {
			c = Call{Endpoint: EndpointToken, AppID: "wx1"}
		}
		out = append(out, e.Decide(c))
	}
	return out
}

func TestDeterminismAcrossEngines(t *testing.T) {
	a := faultScenario(t, NewEngine(99, nil))
	b := faultScenario(t, NewEngine(99, nil))
	if !reflect.DeepEqual(b, a) {
		t.Error("same seed and calls: got different decisions, want identical")
	}
	if c := faultScenario(t, NewEngine(100, nil)); reflect.DeepEqual(c, a) {
		t.Error("different seed: got identical decisions, want different")
	}
}

func TestResetReplaysIdentically(t *testing.T) {
	clk := newFaultClock()
	e := NewEngine(5, clk.Now)
	first := faultScenario(t, e)
	firstList := e.List()

	e.Reset()
	faultEq(t, len(e.List()), 0, "rules after Reset")
	second := faultScenario(t, e)
	if !reflect.DeepEqual(second, first) {
		t.Error("after Reset: got different decisions, want a replay of the first run")
	}
	faultEq(t, e.List(), firstList, "List after replay")

	// Clear alone neither reseeds nor restarts ids, so the replay differs.
	e.Clear()
	third := faultScenario(t, e)
	if reflect.DeepEqual(third, first) {
		t.Error("after Clear: got identical decisions, want different ones")
	}
	faultEq(t, e.List()[0].ID, "f5", "first id after Clear")
}

func TestConcurrentDecide(t *testing.T) {
	e := NewEngine(3, nil)
	mustAddJSON(t, e, `{"endpoint":"token","errcode":40001,"times":100}`)
	mustAddJSON(t, e, `{"endpoint":"*","latency":{"min_ms":0,"max_ms":5},"probability":0.5}`)

	const workers, perWorker = 8, 500
	var wg sync.WaitGroup
	errcodes := make([]int, workers)
	for w := range workers {
		wg.Go(func() {
			for range perWorker {
				if e.Decide(Call{Endpoint: EndpointToken}).ErrCode != 0 {
					errcodes[w]++
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			id, err := e.Add(Rule{Endpoint: EndpointStableToken, ErrCode: 1})
			if err != nil {
				t.Error(err)
				return
			}
			_ = e.List()
			if i%2 == 0 {
				e.Remove(id)
			}
		}
	})
	wg.Wait()

	total := 0
	for _, n := range errcodes {
		total += n
	}
	faultEq(t, total, 100, "errcode answers (times=100)")
	got := e.List()
	faultEq(t, len(got), 2+25, "rules")
	faultEq(t, got[0].Fired, 100, "f1 fired")
	faultEq(t, got[0].Exhausted, true, "f1 exhausted")
	faultEq(t, got[1].Matched, workers*perWorker, "f2 matched")
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		`{"endpoint":"token","errcode":40001}`,
		`{"endpoint":"*","latency":{"p50_ms":10,"p99_ms":100},"probability":0.5}`,
		`{"endpoint":"template_send","match":{"touser":"o"},"delivery_status":"failed:x"}`,
		`{"endpoint":"token","errcode":0}`,
		`{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRule(data)
		if err != nil {
			if !reflect.DeepEqual(r, Rule{}) {
				t.Fatalf("error %q came with a non-zero rule %s", err, faultShow(r))
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRule accepted a rule that Validate rejects: %v", err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		got, err := ParseRule(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip changed the rule:\ngot  %s\nwant %s", faultShow(got), faultShow(r))
		}
		e := NewEngine(1, nil)
		if _, err := e.Add(r); err != nil {
			t.Fatalf("Add rejected a parsed rule: %v", err)
		}
		d := e.Decide(Call{Endpoint: r.Endpoint, AppID: r.Match.AppID, ToUser: r.Match.ToUser, TemplateID: r.Match.TemplateID})
		if d.Delay < 0 || d.Delay > 120*time.Second {
			t.Fatalf("delay: got %v, want 0..120s", d.Delay)
		}
	})
}
