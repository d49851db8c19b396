package scenarios

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// schemaDoc is the generated schema decoded as JSON.
func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	b, err := Schema()
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc), "the schema is not valid JSON")
	return doc
}

// TestSchemaShape: the schema is JSON with the scenario's top-level
// properties, its required keys, strict objects and the definitions that
// editors complete from.
func TestSchemaShape(t *testing.T) {
	doc := schemaDoc(t)
	assert.Equal(t, "https://json-schema.org/draft/2020-12/schema", doc["$schema"])
	assert.NotEmpty(t, doc["$id"])
	assert.Equal(t, "wxload scenario", doc["title"])
	top := resolve(doc, doc)
	props, ok := top["properties"].(map[string]any)
	require.True(t, ok, "the root has no properties: %v", top)
	var keys []string
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	assert.Equal(t, []string{"description", "drain_timeout", "expect", "load", "mock", "name", "seed", "stack"}, keys)
	assert.ElementsMatch(t, []any{"name", "description", "load", "expect"}, top["required"])
	assert.Equal(t, false, top["additionalProperties"], "unknown keys are errors, as in the parser")

	defs := doc["$defs"].(map[string]any)
	for _, name := range []string{"Load", "Pacer", "Step", "Mock", "App", "Rule", "Action", "Stack", "Expectation", "Duration", "Settings"} {
		assert.Contains(t, defs, name)
	}
	pacer := defs["Pacer"].(map[string]any)["properties"].(map[string]any)
	assert.ElementsMatch(t, []any{"constant", "linear", "sine", "steps"}, pacer["type"].(map[string]any)["enum"])
	rule := defs["Rule"].(map[string]any)["properties"].(map[string]any)
	for _, k := range []string{"name", "endpoint", "errcode", "probability", "latency", "after_ms", "for_ms"} {
		assert.Contains(t, rule, k, "the rule's mockwx fields are inlined next to name")
	}
	stack := defs["Stack"].(map[string]any)["properties"].(map[string]any)
	assert.Equal(t, []any{RedisCluster}, stack["redis"].(map[string]any)["enum"], "stack.redis")
	parts := stack["partitions"].(map[string]any)
	assert.Equal(t, []any{float64(1), float64(MaxPartitions)}, []any{parts["minimum"], parts["maximum"]}, "stack.partitions")
	action := defs["Action"].(map[string]any)["properties"].(map[string]any)
	for _, k := range []string{"at", "add_rule", "remove_rule", "clear_rules", "expire_tokens", "restart_redis", "kill_instance", "start_instance"} {
		assert.Contains(t, action, k)
	}
	exp := defs["Expectation"].(map[string]any)
	assert.Len(t, exp["oneOf"], 2, "an expectation is a string or {name, expr}")
}

// TestSchemaValidatesCatalog: every catalog scenario, converted from YAML
// to JSON, validates against the schema (with the small validator below,
// which handles what the generated schema uses).
func TestSchemaValidatesCatalog(t *testing.T) {
	doc := schemaDoc(t)
	all, err := Catalog()
	require.NoError(t, err)
	for _, sc := range all {
		t.Run(sc.Name, func(t *testing.T) {
			src, err := Source(sc.Name)
			require.NoError(t, err)
			v := yamlToJSONValue(t, src)
			assert.Empty(t, validateSchema(doc, doc, v, "$"))
		})
	}
}

// TestSchemaValidatorRejects: the validator is not vacuous: it catches an
// unknown key, a wrong type, a missing required key, a bad enum value and
// a duration that is not one.
func TestSchemaValidatorRejects(t *testing.T) {
	doc := schemaDoc(t)
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown key", minimal + "extra: 1\n", "$.extra: not allowed"},
		{"wrong type", strings.Replace(minimal, "name: minimal", "name: 3", 1), "$.name: want string"},
		{"missing expect", strings.Replace(minimal, "expect:\n  - delivery.lost == 0\n", "", 1), `$: "expect" is required`},
		{"bad enum", strings.Replace(minimal, "{rate: 10}", "{type: expo, rate: 10}", 1), "$.load.pacer.type: not one of"},
		{"bad duration", strings.Replace(minimal, "3s", "3 seconds", 1), "$.load.duration: matches none of oneOf"},
		{"negative rate", strings.Replace(minimal, "{rate: 10}", "{rate: -1}", 1), "$.load.pacer.rate: below the minimum"},
		{"bad redis kind", strings.Replace(minimal, "load:", "stack: {redis: sentinel}\nload:", 1), "$.stack.redis: not one of"},
		{"too many partitions", strings.Replace(minimal, "load:", "stack: {partitions: 1025}\nload:", 1), "$.stack.partitions: above the maximum"},
		{"expectation key", strings.Replace(minimal, "- delivery.lost == 0", "- {expr: x, why: y}", 1), "$.expect[0]: matches none of oneOf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probs := validateSchema(doc, doc, yamlToJSONValue(t, []byte(tc.src)), "$")
			require.NotEmpty(t, probs, "the schema accepted %s", tc.src)
			assert.Contains(t, strings.Join(probs, "\n"), tc.want)
		})
	}
	assert.Empty(t, validateSchema(doc, doc, yamlToJSONValue(t, []byte(minimal)), "$"), "the minimal scenario validates")
}

// TestSchemaAgreesWithParser: files the parser accepts must not be flagged
// by an editor using the schema.
func TestSchemaAgreesWithParser(t *testing.T) {
	doc := schemaDoc(t)
	for _, tc := range []struct{ name, src, bug string }{
		{"bare seconds duration", strings.Replace(minimal, "duration: 3s", "duration: 3", 1),
			"scenario.go Duration.JSONSchema: the pattern requires a unit, but UnmarshalText reads a bare number as seconds (and \"0\")"},
		{"steps without load.duration", `name: steps
description: steps take their total as the load's duration
load:
  pacer:
    type: steps
    steps: [{rate: 10, duration: 2s}]
expect: [delivery.lost == 0]
`, "scenario.go Load.Duration: the json tag has no omitempty, so the schema requires load.duration, which parse.go lets a steps pacer omit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), tc.name)
			require.NoError(t, err, "the parser accepts it")
			probs := validateSchema(doc, doc, yamlToJSONValue(t, []byte(tc.src)), "$")
			if len(probs) > 0 {
				t.Errorf("%s: %v", tc.bug, probs)
			}
		})
	}
}

// yamlToJSONValue converts YAML to the value encoding/json would decode
// from the same document as JSON.
func yamlToJSONValue(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	require.NoError(t, yaml.Unmarshal(src, &v))
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// resolve follows a local $ref ("#/$defs/Name").
func resolve(root, s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		cur := any(root)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		s = cur.(map[string]any)
	}
}

// validateSchema is a minimal JSON Schema validator for the keywords the
// generated schema uses: $ref, type, properties, additionalProperties
// false, required, items, enum, pattern, minimum, maximum, oneOf.
func validateSchema(root, s map[string]any, v any, at string) []string {
	s = resolve(root, s)
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, at+": "+fmt.Sprintf(format, args...)) }
	if alts, ok := s["oneOf"].([]any); ok {
		n := 0
		for _, alt := range alts {
			if len(validateSchema(root, alt.(map[string]any), v, at)) == 0 {
				n++
			}
		}
		if n != 1 {
			bad("matches none of oneOf (or several: %d)", n)
		}
	}
	if typ, ok := s["type"].(string); ok {
		okType := false
		switch typ {
		case "string":
			_, okType = v.(string)
		case "boolean":
			_, okType = v.(bool)
		case "number":
			_, okType = v.(float64)
		case "integer":
			f, isNum := v.(float64)
			okType = isNum && f == math.Trunc(f)
		case "object":
			_, okType = v.(map[string]any)
		case "array":
			_, okType = v.([]any)
		}
		if !okType {
			bad("want %s, got %T (%v)", typ, v, v)
			return probs
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		bad("not one of %v: %v", enum, v)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			bad("does not match %s: %q", p, str)
		}
	}
	if f, isNum := v.(float64); isNum {
		if m, ok := s["minimum"].(float64); ok && f < m {
			bad("below the minimum %v: %v", m, f)
		}
		if m, ok := s["maximum"].(float64); ok && f > m {
			bad("above the maximum %v: %v", m, f)
		}
	}
	if obj, isObj := v.(map[string]any); isObj {
		props, _ := s["properties"].(map[string]any)
		for _, r := range asSlice(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				bad("%q is required", r)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, known := props[k].(map[string]any)
			if !known {
				if s["additionalProperties"] == false {
					probs = append(probs, at+"."+k+": not allowed")
				}
				continue
			}
			probs = append(probs, validateSchema(root, ps, obj[k], at+"."+k)...)
		}
	}
	if arr, isArr := v.([]any); isArr {
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range arr {
				probs = append(probs, validateSchema(root, items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return probs
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
