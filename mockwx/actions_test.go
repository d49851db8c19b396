package mockwx

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// actionCases is one valid rule per registered action kind, in the flat
// form and in the typed form, and the decision each gives on its endpoint.
var actionCases = []struct {
	kind  ActionType
	flat  string
	typed string
	want  Decision
}{
	{
		ActionErrCode,
		`{"endpoint":"template_send","errcode":45009,"errmsg":"reach max api daily quota limit"}`,
		`{"endpoint":"template_send","action":{"type":"errcode","errcode":45009,"errmsg":"reach max api daily quota limit"}}`,
		Decision{RuleIDs: []string{"f1"}, ErrCode: 45009, ErrMsg: "reach max api daily quota limit"},
	},
	{
		ActionHTTPStatus,
		`{"endpoint":"template_send","http_status":502}`,
		`{"endpoint":"template_send","action":{"type":"http_status","http_status":502}}`,
		Decision{RuleIDs: []string{"f1"}, HTTPStatus: 502},
	},
	{
		ActionFault,
		`{"endpoint":"template_send","fault":"reset","latency":{"fixed_ms":7}}`,
		`{"endpoint":"template_send","action":{"type":"fault","fault":"reset"},"latency":{"fixed_ms":7}}`,
		Decision{RuleIDs: []string{"f1"}, Fault: FaultReset, Delay: 7 * time.Millisecond},
	},
	{
		ActionDeliveryStatus,
		`{"endpoint":"template_send","delivery_status":"failed:user block"}`,
		`{"endpoint":"template_send","action":{"type":"delivery_status","delivery_status":"failed:user block"}}`,
		Decision{RuleIDs: []string{"f1"}, DeliveryStatus: "failed:user block"},
	},
	{
		ActionLatency,
		`{"endpoint":"template_send","latency":{"fixed_ms":30}}`,
		`{"endpoint":"template_send","action":{"type":"latency","fixed_ms":30}}`,
		Decision{RuleIDs: []string{"f1"}, Delay: 30 * time.Millisecond},
	},
}

// TestActionRegistry: every registered type has a case below, its kind
// reports the type it is registered under, and its attributes are named.
func TestActionRegistry(t *testing.T) {
	var covered []ActionType
	for _, tc := range actionCases {
		covered = append(covered, tc.kind)
	}
	slices.Sort(covered)
	faultEq(t, ActionTypes(), covered, "registered types (each needs a case in actionCases)")
	for _, typ := range ActionTypes() {
		k := actionKinds[typ]()
		faultEq(t, k.ActionType(), typ, fmt.Sprintf("ActionType of the kind registered as %s", typ))
		if len(attributeNames(k)) == 0 {
			t.Errorf("%s: got no attributes, want the kind's JSON fields", typ)
		}
	}
	faultEq(t, attributeNames(&LatencyAction{}), []string{"fixed_ms", "min_ms", "max_ms", "p50_ms", "p99_ms"}, "latency attributes (embedded Latency)")
}

// TestActionFlatAndTypedAgree: for each kind, the flat and the typed rule
// parse, resolve to the same typed action, decide the same, and the typed
// rule survives a JSON round trip.
func TestActionFlatAndTypedAgree(t *testing.T) {
	for _, tc := range actionCases {
		t.Run(string(tc.kind), func(t *testing.T) {
			flat, err := ParseRule([]byte(tc.flat))
			if err != nil {
				t.Fatalf("ParseRule(%s): %v", tc.flat, err)
			}
			typed, err := ParseRule([]byte(tc.typed))
			if err != nil {
				t.Fatalf("ParseRule(%s): %v", tc.typed, err)
			}
			if flat.Action != nil {
				t.Errorf("flat rule %s: got Action %s, want nil (the flat form parses as before)", tc.flat, faultShow(flat.Action))
			}
			fa, ta := flat.TypedAction(), typed.TypedAction()
			if fa == nil || ta == nil {
				t.Fatalf("TypedAction: got %v (flat) and %v (typed), want both set", fa, ta)
			}
			faultEq(t, fa.Kind.ActionType(), tc.kind, "flat rule's action type")
			faultEq(t, fa, ta, "typed action of the flat and the typed rule")

			for _, r := range []Rule{flat, typed} {
				e := NewEngine(1, nil)
				mustAddRule(t, e, r)
				faultEq(t, e.Decide(Call{Endpoint: EndpointTemplateSend}), tc.want, "decision of "+faultShow(r))
			}

			b, err := json.Marshal(typed)
			if err != nil {
				t.Fatal(err)
			}
			faultEq(t, string(b), tc.typed, "typed rule marshalled")
			back, err := ParseRule(b)
			if err != nil {
				t.Fatalf("re-parse of %s: %v", b, err)
			}
			faultEq(t, back, typed, "typed rule after a JSON round trip")
		})
	}
}

// TestActionSameRandomness: a flat and a typed latency rule mixed with
// probabilities draw the same delays from the same seed.
func TestActionSameRandomness(t *testing.T) {
	run := func(rules ...string) []Decision {
		e := NewEngine(42, nil)
		for _, js := range rules {
			mustAddJSON(t, e, js)
		}
		var out []Decision
		for range 200 {
			out = append(out, e.Decide(Call{Endpoint: EndpointToken}))
		}
		return out
	}
	flat := run(`{"endpoint":"*","latency":{"p50_ms":20,"p99_ms":400},"probability":0.7}`,
		`{"endpoint":"token","errcode":-1,"probability":0.3,"latency":{"min_ms":1,"max_ms":9}}`)
	typed := run(`{"endpoint":"*","action":{"type":"latency","p50_ms":20,"p99_ms":400},"probability":0.7}`,
		`{"endpoint":"token","action":{"type":"errcode","errcode":-1},"probability":0.3,"latency":{"min_ms":1,"max_ms":9}}`)
	if !reflect.DeepEqual(typed, flat) {
		t.Error("same seed and calls: the typed rules decided differently from the flat ones")
	}
}

// TestActionTypedShadowing: a typed answering action shadows later ones; a
// typed latency action does not.
func TestActionTypedShadowing(t *testing.T) {
	e := NewEngine(1, nil)
	mustAddJSON(t, e, `{"endpoint":"token","action":{"type":"fault","fault":"timeout"}}`)
	mustAddJSON(t, e, `{"endpoint":"token","action":{"type":"errcode","errcode":40001}}`)
	mustAddJSON(t, e, `{"endpoint":"token","action":{"type":"latency","fixed_ms":5}}`)
	got := e.Decide(Call{Endpoint: EndpointToken})
	faultEq(t, got, Decision{RuleIDs: []string{"f1", "f3"}, Fault: FaultTimeout, Delay: 5 * time.Millisecond}, "decision")
	faultEq(t, e.List()[1].Matched, 0, "shadowed rule's matched count")
}

// TestActionValidation: each kind's problems name the attribute, prefixed
// with "action." in the typed form; the flat form keeps its messages.
func TestActionValidation(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"errcode zero typed", `{"endpoint":"token","action":{"type":"errcode","errcode":0}}`, "action.errcode: must be non-zero"},
		{"errcode missing typed", `{"endpoint":"token","action":{"type":"errcode","errmsg":"x"}}`, "action.errcode: must be non-zero"},
		{"errcode zero flat", `{"endpoint":"token","errcode":0}`, "errcode: must be non-zero"},
		{"errcode wrong type", `{"endpoint":"token","action":{"type":"errcode","errcode":"1"}}`, "action.errcode: must be a JSON integer, not a string"},
		{"errcode unknown attribute", `{"endpoint":"token","action":{"type":"errcode","errcode":1,"http_status":500}}`, "action.http_status: unknown attribute (action type errcode has errcode, errmsg)"},
		{"http_status range typed", `{"endpoint":"token","action":{"type":"http_status","http_status":302}}`, "action.http_status: must be between 400 and 599 (got 302)"},
		{"http_status missing typed", `{"endpoint":"token","action":{"type":"http_status"}}`, "action.http_status: must be between 400 and 599 (got 0)"},
		{"http_status range flat", `{"endpoint":"token","http_status":302}`, "http_status: must be between 400 and 599 (got 302)"},
		{"fault unknown typed", `{"endpoint":"token","action":{"type":"fault","fault":"drop"}}`, `action.fault: must be one of reset, timeout, malformed, empty (got "drop")`},
		{"fault unknown flat", `{"endpoint":"token","fault":"drop"}`, `fault: must be one of reset, timeout, malformed, empty (got "drop")`},
		{"delivery_status typed", `{"endpoint":"callback","action":{"type":"delivery_status","delivery_status":"ok"}}`, `action.delivery_status: must be "success" or start with "failed"`},
		{"delivery_status flat", `{"endpoint":"callback","delivery_status":"ok"}`, `delivery_status: must be "success" or start with "failed"`},
		{"latency form typed", `{"endpoint":"token","action":{"type":"latency"}}`, "action: give exactly one of fixed_ms, min_ms/max_ms, p50_ms/p99_ms"},
		{"latency negative typed", `{"endpoint":"token","action":{"type":"latency","fixed_ms":-1}}`, "action.fixed_ms: must not be negative (got -1)"},
		{"latency cap typed", `{"endpoint":"token","action":{"type":"latency","min_ms":0,"max_ms":120001}}`, "action.max_ms: must be at most 120000"},
		{"latency order typed", `{"endpoint":"token","action":{"type":"latency","p50_ms":9,"p99_ms":3}}`, "action: p99_ms must be >= p50_ms (got 3 < 9)"},
		{"latency negative flat", `{"endpoint":"token","latency":{"fixed_ms":-1}}`, "latency.fixed_ms: must not be negative (got -1)"},
		{"latency twice", `{"endpoint":"token","action":{"type":"latency","fixed_ms":1},"latency":{"fixed_ms":2}}`, "latency: not allowed beside a latency action"},
		{"typed and flat", `{"endpoint":"token","http_status":500,"action":{"type":"errcode","errcode":1}}`, "action: give the action either as an action object or as the flat field http_status, not both"},
		{"unknown type", `{"endpoint":"token","action":{"type":"drop_table"}}`, `action.type: unknown action type "drop_table"; must be one of delivery_status, errcode, fault, http_status, latency`},
		{"missing type", `{"endpoint":"token","action":{"errcode":1}}`, "action.type: is required; must be one of delivery_status, errcode, fault, http_status, latency"},
		{"null type", `{"endpoint":"token","action":{"type":null,"errcode":1}}`, "action.type: is required"},
		{"type not a string", `{"endpoint":"token","action":{"type":1}}`, "action.type: must be a string"},
		{"action not an object", `{"endpoint":"token","action":"reset"}`, "action: must be an object"},
		{"action array", `{"endpoint":"token","action":[]}`, "action: must be an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRule([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParseRule(%s): got nil error and %s, want %q", tc.in, faultShow(got), tc.want)
			}
			faultEq(t, got, Rule{}, "rule returned with the error")
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), "; "+tc.want) {
				t.Errorf("ParseRule(%s): got %q, want a problem starting %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestActionValidateGoValues: typed actions built in Go are validated as
// the parsed ones are.
func TestActionValidateGoValues(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want string // "" means valid
	}{
		{"valid", Rule{Endpoint: EndpointToken, Action: &RuleAction{Kind: &ErrCodeAction{ErrCode: 1}}}, ""},
		{"nil kind", Rule{Endpoint: EndpointToken, Action: &RuleAction{}}, "action.type: is required"},
		{"zero errcode", Rule{Endpoint: EndpointToken, Action: &RuleAction{Kind: &ErrCodeAction{}}}, "action.errcode: must be non-zero"},
		{"latency empty", Rule{Endpoint: EndpointToken, Action: &RuleAction{Kind: &LatencyAction{}}}, "action: give exactly one of"},
		{"beside flat", Rule{Endpoint: EndpointToken, Fault: FaultReset, Action: &RuleAction{Kind: &FaultAction{Fault: FaultReset}}}, "not both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate(%s): got %v, want nil", faultShow(tc.rule), err)
			case tc.want != "" && err == nil:
				t.Errorf("Validate(%s): got nil, want an error containing %q", faultShow(tc.rule), tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate(%s): got %q, want it to contain %q", faultShow(tc.rule), err, tc.want)
			}
		})
	}
}

// TestActionEndpoints: which endpoints each kind applies to, in both
// forms: errcode and http_status everywhere but "event", delivery_status on
// template_send and callback only, fault and latency everywhere.
func TestActionEndpoints(t *testing.T) {
	allowed := map[ActionType]func(Endpoint) bool{
		ActionErrCode:        func(e Endpoint) bool { return e != EndpointEvent },
		ActionHTTPStatus:     func(e Endpoint) bool { return e != EndpointEvent },
		ActionDeliveryStatus: func(e Endpoint) bool { return e == EndpointTemplateSend || e == EndpointCallback },
		ActionFault:          func(Endpoint) bool { return true },
		ActionLatency:        func(Endpoint) bool { return true },
	}
	refusal := map[ActionType]string{
		ActionErrCode:        "errcode: not available on endpoint event, a push to the app",
		ActionHTTPStatus:     "http_status: not available on endpoint event, a push to the app",
		ActionDeliveryStatus: "delivery_status: only allowed on endpoint template_send or callback",
	}
	var eps []Endpoint
	for e := range endpoints {
		eps = append(eps, e)
	}
	slices.Sort(eps)
	for _, tc := range actionCases {
		for _, form := range []struct{ name, js, prefix string }{{"flat", tc.flat, ""}, {"typed", tc.typed, "action."}} {
			for _, ep := range eps {
				js := strings.Replace(form.js, `"endpoint":"template_send"`, fmt.Sprintf(`"endpoint":%q`, ep), 1)
				t.Run(fmt.Sprintf("%s/%s/%s", tc.kind, form.name, ep), func(t *testing.T) {
					_, err := ParseRule([]byte(js))
					if allowed[tc.kind](ep) {
						if err != nil {
							t.Errorf("ParseRule(%s): got %v, want the rule accepted", js, err)
						}
						return
					}
					want := form.prefix + refusal[tc.kind]
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("ParseRule(%s): got %v, want an error containing %q", js, err, want)
					}
				})
			}
		}
	}
}

// TestActionList: a typed rule is listed with its typed action; a flat one
// exactly as before (its keys are pinned by TestListStatus).
func TestActionList(t *testing.T) {
	e := NewEngine(1, nil)
	mustAddJSON(t, e, `{"endpoint":"token","action":{"type":"errcode","errcode":40001},"times":1}`)
	b, err := json.Marshal(e.List()[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	faultEq(t, m["action"], any(map[string]any{"type": "errcode", "errcode": 40001.0}), "listed action")
	if _, ok := m["errcode"]; ok {
		t.Errorf("listed typed rule %s: got a flat errcode too, want the rule as given", b)
	}
}

// TestActionSchema: the schema has one alternative per registered kind,
// each requiring its type.
func TestActionSchema(t *testing.T) {
	s := RuleAction{}.JSONSchema()
	var titles []string
	for _, alt := range s.OneOf {
		titles = append(titles, alt.Title)
		if alt.Required[0] != "type" {
			t.Errorf("%s: got required %v, want type first", alt.Title, alt.Required)
		}
		typ, ok := alt.Properties.Get("type")
		if !ok || !reflect.DeepEqual(typ.Enum, []any{alt.Title}) {
			t.Errorf("%s: got type property %v, want enum [%s]", alt.Title, typ, alt.Title)
		}
	}
	var want []string
	for _, typ := range ActionTypes() {
		want = append(want, string(typ))
	}
	faultEq(t, titles, want, "schema alternatives")
}

// TestActionYAML: a config preloads typed rules from YAML, and reports a
// bad one under its rule's index.
func TestActionYAML(t *testing.T) {
	cfg, err := ParseConfig([]byte(`rules:
  - endpoint: template_send
    action: {type: errcode, errcode: 45009}
  - endpoint: token
    errcode: 40001
  - endpoint: "*"
    action:
      type: latency
      p50_ms: 10
      p99_ms: 100
`))
	if err != nil {
		t.Fatal(err)
	}
	faultEq(t, cfg.Rules, []Rule{
		{Endpoint: EndpointTemplateSend, Action: &RuleAction{Kind: &ErrCodeAction{ErrCode: 45009}}},
		{Endpoint: EndpointToken, ErrCode: 40001},
		{Endpoint: EndpointAny, Action: &RuleAction{Kind: &LatencyAction{Latency{P50MS: new(10), P99MS: new(100)}}}},
	}, "rules")

	_, err = ParseConfig([]byte("rules:\n  - endpoint: token\n    action: {type: explode}\n"))
	want := `rules[0]: action.type: unknown action type "explode"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown type in YAML: got %v, want an error containing %q", err, want)
	}
	_, err = ParseConfig([]byte("rules:\n  - endpoint: event\n    action: {type: http_status, http_status: 503}\n"))
	want = "rules[0]: action.http_status: not available on endpoint event"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("http_status on event in YAML: got %v, want an error containing %q", err, want)
	}
}
