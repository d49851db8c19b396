package mockwx

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/invopop/jsonschema"
)

// ActionType names a registered kind of action: the "type" of a rule's
// typed action, {"action":{"type":"errcode","errcode":45009}}.
type ActionType string

// The registered action types.
const (
	// ActionErrCode answers a WeChat error code (ErrCodeAction).
	ActionErrCode ActionType = "errcode"
	// ActionHTTPStatus answers a non-2xx HTTP status (HTTPStatusAction).
	ActionHTTPStatus ActionType = "http_status"
	// ActionFault breaks the connection or the body (FaultAction).
	ActionFault ActionType = "fault"
	// ActionDeliveryStatus sets the status of the delivery report
	// (DeliveryStatusAction).
	ActionDeliveryStatus ActionType = "delivery_status"
	// ActionLatency only delays the call (LatencyAction).
	ActionLatency ActionType = "latency"
)

// ActionKind is one registered kind of action: a struct whose exported
// fields are its typed attributes (their JSON names are the attribute
// names), which validates itself, says which endpoints it applies to and
// carries out its effect on a Decision. Each kind lives in its own
// action_<type>.go file and is registered in actionKinds.
type ActionKind interface {
	// ActionType is the name the kind is registered under.
	ActionType() ActionType

	// check lists what is wrong with the attributes, each problem starting
	// with prefix and the attribute's name ("action.errcode: ...").
	check(prefix string) []string
	// endpointProblem says why the action cannot apply to endpoint e
	// (starting with prefix and the attribute's name), or "" when it can.
	endpointProblem(prefix string, e Endpoint) string
	// answers reports whether the action decides the call's answer. The
	// first firing rule whose action answers wins; later ones are passed
	// over. Actions that do not answer (latency) always apply.
	answers() bool
	// decide writes the action's effect into d, drawing from rng if the
	// action is random.
	decide(d *Decision, rng *rand.Rand)
	// cloneKind returns a copy that shares no pointers with the original.
	cloneKind() ActionKind
}

// actionKinds registers every action kind by its type; adding one is a
// file holding its struct and one line here.
var actionKinds = map[ActionType]func() ActionKind{
	ActionErrCode:        func() ActionKind { return new(ErrCodeAction) },
	ActionHTTPStatus:     func() ActionKind { return new(HTTPStatusAction) },
	ActionFault:          func() ActionKind { return new(FaultAction) },
	ActionDeliveryStatus: func() ActionKind { return new(DeliveryStatusAction) },
	ActionLatency:        func() ActionKind { return new(LatencyAction) },
}

// ActionTypes lists the registered action types, sorted.
func ActionTypes() []ActionType {
	types := make([]ActionType, 0, len(actionKinds))
	for t := range actionKinds {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

func actionTypeChoices() string {
	var names []string
	for _, t := range ActionTypes() {
		names = append(names, string(t))
	}
	return "must be one of " + strings.Join(names, ", ")
}

// RuleAction is a rule's action in its typed form: one registered kind
// with its attributes. In JSON (and YAML) it is an object whose "type"
// names the kind and whose other keys are the kind's attributes:
//
//	{"type":"errcode","errcode":45009,"errmsg":"reach max api daily quota limit"}
//	{"type":"http_status","http_status":502}
//	{"type":"fault","fault":"reset"}
//	{"type":"delivery_status","delivery_status":"failed:user block"}
//	{"type":"latency","p50_ms":20,"p99_ms":400}
type RuleAction struct {
	// Kind is the action; nil is invalid.
	Kind ActionKind

	// raw and err keep an action that YAML decoding could not read, so
	// that the rule's validation reports it where the rule is (with the
	// scenario's line) and JSON carries it to ParseRule unchanged.
	raw json.RawMessage
	err error
}

// fieldError is a rule problem that names its field; ParseRule reports it
// as is rather than as malformed JSON.
type fieldError struct{ msg string }

func (e *fieldError) Error() string { return e.msg }

// MarshalJSON writes {"type": ..., attributes...}.
func (a RuleAction) MarshalJSON() ([]byte, error) {
	if a.Kind == nil && a.raw != nil {
		return a.raw, nil
	}
	if a.Kind == nil {
		return nil, errors.New("mockwx: RuleAction without a Kind")
	}
	attrs, err := json.Marshal(a.Kind)
	if err != nil {
		return nil, err
	}
	typ, _ := json.Marshal(a.Kind.ActionType())
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	b.Write(typ)
	if inner := bytes.TrimSpace(attrs[1 : len(attrs)-1]); len(inner) > 0 {
		b.WriteByte(',')
		b.Write(inner)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads {"type": ..., attributes...} strictly: the type must
// be registered and every other key must be one of its attributes.
func (a *RuleAction) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return &fieldError{"action: must be an object {\"type\": ..., attributes...}"}
	}
	if fields == nil {
		return &fieldError{"action: must be an object {\"type\": ..., attributes...}"}
	}
	raw, ok := fields["type"]
	var typ string
	if ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &typ); err != nil {
			return &fieldError{"action.type: must be a string; " + actionTypeChoices()}
		}
	}
	if typ == "" {
		return &fieldError{"action.type: is required; " + actionTypeChoices()}
	}
	newKind, ok := actionKinds[ActionType(typ)]
	if !ok {
		return &fieldError{fmt.Sprintf("action.type: unknown action type %q; %s", typ, actionTypeChoices())}
	}
	delete(fields, "type")
	attrs, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	kind := newKind()
	dec := json.NewDecoder(bytes.NewReader(attrs))
	dec.DisallowUnknownFields()
	if err := dec.Decode(kind); err != nil {
		if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field != "" {
			return &fieldError{fmt.Sprintf("action.%s: must be a JSON %s, not a %s (action type %s)", te.Field, jsonKind(te.Type), te.Value, typ)}
		}
		attrs := strings.Join(attributeNames(kind), ", ")
		if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
			return &fieldError{fmt.Sprintf("action.%s: unknown attribute (action type %s has %s)", strings.TrimSuffix(name, `"`), typ, attrs)}
		}
		return &fieldError{fmt.Sprintf("action: %s (action type %s has %s)", strings.TrimPrefix(err.Error(), "json: "), typ, attrs)}
	}
	a.Kind = kind
	return nil
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

// attributeNames lists the JSON names of a kind's attributes, in field
// order, following embedded structs.
func attributeNames(kind ActionKind) []string {
	var names []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case f.Anonymous && name == "":
				walk(f.Type)
			case f.IsExported() && name != "-":
				names = append(names, cmp.Or(name, f.Name))
			}
		}
	}
	walk(reflect.TypeOf(kind).Elem())
	return names
}

// UnmarshalYAML reads the same object as UnmarshalJSON from YAML. An
// action it cannot read is kept, and reported by the rule's Validate.
func (a *RuleAction) UnmarshalYAML(data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	if err := a.UnmarshalJSON(js); err != nil {
		*a = RuleAction{raw: js, err: err}
	}
	return nil
}

// JSONSchema describes the typed action for editors: one alternative per
// registered kind, each reflected from the kind's struct.
func (RuleAction) JSONSchema() *jsonschema.Schema {
	r := &jsonschema.Reflector{DoNotReference: true, AllowAdditionalProperties: false}
	s := &jsonschema.Schema{
		Description: "The rule's action in typed form: a registered type and its attributes.",
	}
	for _, t := range ActionTypes() {
		ks := r.Reflect(actionKinds[t]())
		props := jsonschema.NewProperties()
		props.Set("type", &jsonschema.Schema{Type: "string", Enum: []any{string(t)}})
		for p := ks.Properties.Oldest(); p != nil; p = p.Next() {
			props.Set(p.Key, p.Value)
		}
		s.OneOf = append(s.OneOf, &jsonschema.Schema{
			Title:                string(t),
			Type:                 "object",
			Properties:           props,
			Required:             append([]string{"type"}, ks.Required...),
			AdditionalProperties: jsonschema.FalseSchema,
		})
	}
	return s
}

// flatActions returns the actions a rule's flat fields give (errcode with
// errmsg, http_status, fault, delivery_status), in that order. Latency is
// not among them: a flat latency is the rule's delay.
func (r Rule) flatActions() []ActionKind {
	var out []ActionKind
	if r.ErrCode != 0 {
		out = append(out, &ErrCodeAction{ErrCode: r.ErrCode, ErrMsg: r.ErrMsg})
	}
	if r.HTTPStatus != 0 {
		out = append(out, &HTTPStatusAction{HTTPStatus: r.HTTPStatus})
	}
	if r.Fault != "" {
		out = append(out, &FaultAction{Fault: r.Fault})
	}
	if r.DeliveryStatus != "" {
		out = append(out, &DeliveryStatusAction{DeliveryStatus: r.DeliveryStatus})
	}
	return out
}

// flatNames lists the flat action fields that are set.
func flatNames(kinds []ActionKind) string {
	var names []string
	for _, k := range kinds {
		names = append(names, string(k.ActionType()))
	}
	return strings.Join(names, ", ")
}

// effect resolves a valid rule into its action and the latency it adds
// besides: the typed action, else the flat action field, else a flat
// latency alone, which becomes a latency action. Both are nil for a rule
// with no effect.
func (r Rule) effect() (ActionKind, *Latency) {
	if r.Action != nil {
		return r.Action.Kind, r.Latency
	}
	if flat := r.flatActions(); len(flat) > 0 {
		return flat[0], r.Latency
	}
	if r.Latency != nil {
		return &LatencyAction{Latency: *r.Latency}, nil
	}
	return nil, nil
}

// TypedAction returns the rule's action as a registered kind, whichever
// form it was given in: the typed action, or the one the flat fields
// (errcode, http_status, fault, delivery_status, or a latency alone) give.
// It is nil for a rule with no action. The result shares no memory with r.
func (r Rule) TypedAction() *RuleAction {
	k, _ := r.effect()
	if k == nil {
		return nil
	}
	return &RuleAction{Kind: k.cloneKind()}
}
