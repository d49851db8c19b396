package scenarios

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/bad")

// TestParseBadFiles parses every scenario under testdata/bad and compares
// the error text with the file's .golden twin (go test -run
// TestParseBadFiles -update rewrites them). Each bad file must fail.
func TestParseBadFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, err := ReadFile(file)
			require.Error(t, err, "%s parsed without error", file)
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file: run go test ./scenarios -run TestParseBadFiles -update")
			assert.Equal(t, string(want), got, "error for %s", file)
		})
	}
}

// TestParseBadFilesAreProblems: every error Parse returns for a bad file is
// a Problems naming the file, so callers can list them one per line.
func TestParseBadFilesAreProblems(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	require.NoError(t, err)
	for _, file := range files {
		_, err := ReadFile(file)
		var ps Problems
		require.True(t, errors.As(err, &ps), "%s: %T is not a Problems", file, err)
		require.NotEmpty(t, ps, file)
		for _, p := range ps {
			assert.Equal(t, filepath.Base(file), p.File, "%s: %v", file, p)
			assert.NotEmpty(t, p.Msg, "%s: %v", file, p)
		}
	}
}

// TestParseErrorLines checks the line numbers of the errors that carry one:
// the line of the offending key (or of its parent when the key is missing).
func TestParseErrorLines(t *testing.T) {
	for _, tc := range []struct {
		file string
		path string
		line int
	}{
		{"steps-sum", "load.pacer.steps", 8}, // a sequence is located at its first item
		{"sine-amp", "load.pacer.amp", 8},
		{"duplicate-template", "load.templates[2].id", 9},
		{"ratios", "load.duplicate_ratio", 6},
		{"ratios", "load.batch.size", 10},
		{"timeline-two-actions", "mock.timeline[0]", 5},
		{"timeline-remove-unknown", "mock.timeline[0].remove_rule", 8},
		{"timeline-kill-last", "mock.timeline[1].kill_instance", 10},
		{"timeline-order", "mock.timeline[1].at", 7},
		{"bad-expr", "expect[0]", 7},
		{"stack-range", "stack.instances", 4},
		{"stack-redis", "stack.redis", 5},
		{"stack-redis", "stack.partitions", 6},
	} {
		t.Run(tc.file+"/"+tc.path, func(t *testing.T) {
			_, err := ReadFile(filepath.Join("testdata", "bad", tc.file+".yaml"))
			var ps Problems
			require.True(t, errors.As(err, &ps), "%v", err)
			for _, p := range ps {
				if p.Path == tc.path {
					assert.Equal(t, tc.line, p.Line, "%v", p)
					return
				}
			}
			t.Fatalf("no problem at %s in %v", tc.path, ps)
		})
	}
}

// TestParseUnknownKeyLine: strict decoding names the unknown key and its
// line (the yaml decoder's error, which has no Problem.Path).
func TestParseUnknownKeyLine(t *testing.T) {
	_, err := ReadFile(filepath.Join("testdata", "bad", "unknown-key.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "[6:")
	assert.Contains(t, err.Error(), "ratee")
	_, err = ReadFile(filepath.Join("testdata", "bad", "unknown-top-key.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "[8:")
	assert.Contains(t, err.Error(), "expectations")
}

const minimal = `name: minimal
description: the smallest valid scenario
load:
  duration: 3s
  pacer: {rate: 10}
expect:
  - delivery.lost == 0
`

// TestParseDefaults: a minimal scenario parses and gets every default.
func TestParseDefaults(t *testing.T) {
	sc, err := Parse([]byte(minimal), "minimal.yaml")
	require.NoError(t, err)
	assert.Equal(t, "minimal", sc.Name)
	assert.Equal(t, int64(1), sc.Seed)
	assert.Equal(t, 1, sc.Stack.Instances)
	assert.Equal(t, DefaultDrainTimeout, sc.DrainTimeout.D())
	assert.Equal(t, []App{{Name: DefaultAppName, CallbackMode: "plain", Weight: 1}}, sc.Mock.Apps)
	assert.Equal(t, PacerConstant, sc.Load.Pacer.Type)
	assert.Equal(t, DefaultRecipients, sc.Load.Recipients)
	assert.Equal(t, []TemplateShare{{ID: DefaultTemplate, Weight: 1}}, sc.Load.Templates)
	assert.Equal(t, DefaultTimeout, sc.Load.Timeout.D())
	assert.Equal(t, 0, sc.Load.Batch.Size, "no batch size without batches")
	assert.Equal(t, []Expectation{{Expr: "delivery.lost == 0"}}, sc.Expect)
	assert.InDelta(t, 30, sc.Load.TotalHits(), 1e-9)
	require.NoError(t, sc.Validate(), "a parsed scenario validates again")
	assert.Equal(t, sc, sc.WithDefaults(), "WithDefaults is idempotent")
}

// TestParseStackRedis: stack.redis and stack.partitions parse as written,
// keep their zero values (one Redis; wxpushd's or the harness's partition
// default) when left out, and are checked in a scenario built in Go too.
func TestParseStackRedis(t *testing.T) {
	for _, tc := range []struct {
		stack      string
		redis      string
		partitions int
	}{
		{"", "", 0},
		{"stack: {redis: cluster}\n", RedisCluster, 0},
		{"stack: {redis: cluster, partitions: 6}\n", RedisCluster, 6},
		{"stack: {partitions: 1024}\n", "", 1024},
		{"stack: {instances: 2, partitions: 1}\n", "", 1},
	} {
		t.Run(tc.stack, func(t *testing.T) {
			sc, err := Parse([]byte(minimal+tc.stack), "stack.yaml")
			require.NoError(t, err)
			assert.Equal(t, tc.redis, sc.Stack.Redis)
			assert.Equal(t, tc.partitions, sc.Stack.Partitions)
		})
	}
	sc, err := Parse([]byte(minimal), "minimal.yaml")
	require.NoError(t, err)
	for _, tc := range []struct {
		edit func(*Stack)
		want string
	}{
		{func(st *Stack) { st.Redis = "Cluster" }, `stack.redis: "Cluster": use cluster`},
		{func(st *Stack) { st.Partitions = MaxPartitions + 1 }, "stack.partitions: 1025 is out of range (1 to 1024)"},
		{func(st *Stack) { st.Partitions = -3 }, "stack.partitions: -3 is out of range"},
	} {
		bad := sc
		tc.edit(&bad.Stack)
		err := bad.Validate()
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// TestParseStepsDuration: a steps pacer without load.duration takes the
// steps' total; batches get the default size; a restart gets its default
// down time.
func TestParseStepsDuration(t *testing.T) {
	sc, err := Parse([]byte(`name: steps
description: steps without a duration
mock:
  timeline:
    - at: 1s
      restart_redis: {}
load:
  pacer:
    type: steps
    steps:
      - {rate: 10, duration: 2s}
      - {rate: 30, duration: 500ms}
  batch: {share: 0.5}
expect:
  - delivery.lost == 0
`), "steps.yaml")
	require.NoError(t, err)
	assert.Equal(t, 2500*time.Millisecond, sc.Load.Duration.D())
	assert.Equal(t, DefaultBatchSize, sc.Load.Batch.Size)
	assert.InDelta(t, 35, sc.Load.TotalHits(), 1e-9)
	require.NotNil(t, sc.Mock.Timeline[0].RestartRedis)
	assert.Equal(t, DefaultRedisDown, sc.Mock.Timeline[0].RestartRedis.Down.D())
	assert.Equal(t, "restart_redis", sc.Mock.Timeline[0].Kind())
}

// TestParseTimelineValid: the timeline checks accept what is legal: a rule
// added in the timeline and removed later, kill then restart then kill
// again, an instance killed while another runs.
func TestParseTimelineValid(t *testing.T) {
	sc, err := Parse([]byte(`name: timeline-ok
description: a legal timeline
stack: {instances: 2}
mock:
  rules:
    - {name: busy, endpoint: template_send, errcode: -1, probability: 0.2}
  timeline:
    - {at: 1s, remove_rule: busy}
    - {at: 1s, add_rule: {name: quota, endpoint: template_send, errcode: 45009}}
    - {at: 2s, kill_instance: 0}
    - {at: 3s, start_instance: 0}
    - {at: 4s, kill_instance: 1}
    - {at: 5s, remove_rule: quota}
    - {at: 6s, expire_tokens: {app: "*"}}
    - {at: 7s, clear_rules: true}
    - {at: 10s, restart_redis: {down: 1s}}
load:
  duration: 10s
  pacer: {rate: 10}
expect:
  - delivery.lost == 0
`), "timeline-ok.yaml")
	require.NoError(t, err)
	var kinds []string
	for _, a := range sc.Mock.Timeline {
		kinds = append(kinds, a.Kind())
	}
	assert.Equal(t, []string{"remove_rule", "add_rule", "kill_instance", "start_instance", "kill_instance",
		"remove_rule", "expire_tokens", "clear_rules", "restart_redis"}, kinds)
	assert.Equal(t, -1, sc.Mock.Rules[0].ErrCode, "the inline mockwx rule fields decode")
	assert.Equal(t, "busy", sc.Mock.Rules[0].Name)
	require.NotNil(t, sc.Mock.Rules[0].Probability)
	assert.InDelta(t, 0.2, *sc.Mock.Rules[0].Probability, 1e-12)
}

// TestDurationYAML: a Go duration string, a quoted one, or a bare number of
// seconds.
func TestDurationYAML(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"500ms", 500 * time.Millisecond},
		{`"1.5s"`, 1500 * time.Millisecond},
		{"'2m'", 2 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"10", 10 * time.Second},
		{"0.25", 250 * time.Millisecond},
		{"0", 0},
	} {
		var v struct {
			D Duration `yaml:"d"`
		}
		require.NoError(t, yaml.Unmarshal([]byte("d: "+tc.in), &v), tc.in)
		assert.Equal(t, tc.want, v.D.D(), tc.in)
	}
	for _, bad := range []string{"ten", "5 parsecs", "1x"} {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte("d: "+bad), &v)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "invalid duration", bad)
	}
}

// TestDurationJSON: JSON takes a duration string or a number of seconds,
// and writes a duration string that reads back the same.
func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{`"500ms"`, 500 * time.Millisecond},
		{`"2m"`, 2 * time.Minute},
		{`3`, 3 * time.Second},
		{`1.5`, 1500 * time.Millisecond},
		{`"4"`, 4 * time.Second},
	} {
		var d Duration
		require.NoError(t, json.Unmarshal([]byte(tc.in), &d), tc.in)
		assert.Equal(t, tc.want, d.D(), tc.in)
		b, err := json.Marshal(d)
		require.NoError(t, err)
		var back Duration
		require.NoError(t, json.Unmarshal(b, &back), string(b))
		assert.Equal(t, d, back, "round trip of %s via %s", tc.in, b)
	}
	var d Duration
	assert.Error(t, json.Unmarshal([]byte(`"soon"`), &d))
	assert.Error(t, json.Unmarshal([]byte(`true`), &d))
	b, err := json.Marshal(Duration(1500 * time.Millisecond))
	require.NoError(t, err)
	assert.JSONEq(t, `"1.5s"`, string(b))
}

// TestExpectationForms: an expectation is a plain string or {name, expr};
// Label is the name when there is one.
func TestExpectationForms(t *testing.T) {
	var v struct {
		Expect []Expectation `yaml:"expect"`
	}
	require.NoError(t, yaml.UnmarshalWithOptions([]byte(`expect:
  - delivery.lost == 0
  - name: fast
    expr: accept.latency_ms.p99 < 25
  - expr: mock.token_calls <= 3
  - "mock.by_errcode[\"-1\"] > 0"
`), &v, yaml.Strict()))
	assert.Equal(t, []Expectation{
		{Expr: "delivery.lost == 0"},
		{Name: "fast", Expr: "accept.latency_ms.p99 < 25"},
		{Expr: "mock.token_calls <= 3"},
		{Expr: `mock.by_errcode["-1"] > 0`},
	}, v.Expect)
	assert.Equal(t, "delivery.lost == 0", v.Expect[0].Label())
	assert.Equal(t, "fast", v.Expect[1].Label())
}

// TestValidateInGo: Validate checks a scenario built in Go, with the same
// problems Parse reports (no file, no line).
func TestValidateInGo(t *testing.T) {
	sc := Scenario{Name: "go", Description: "built in Go",
		Load:   Load{Duration: Duration(time.Second), Pacer: Pacer{Rate: 5}},
		Expect: []Expectation{{Expr: "delivery.lost == 0"}}}
	require.NoError(t, sc.Validate())
	require.NoError(t, sc.WithDefaults().Validate())
	sc.Load.Pacer.Rate = MaxRate + 1
	sc.Expect = nil
	err := sc.Validate()
	var ps Problems
	require.True(t, errors.As(err, &ps), "%v", err)
	var paths []string
	for _, p := range ps {
		assert.Empty(t, p.File)
		assert.Zero(t, p.Line)
		paths = append(paths, p.Path)
	}
	assert.Equal(t, []string{"load.pacer.rate", "expect"}, paths)
}

// TestProblemError: the formats of one problem and of several.
func TestProblemError(t *testing.T) {
	assert.Equal(t, "f.yaml:3: load.duration: is required", Problem{File: "f.yaml", Line: 3, Path: "load.duration", Msg: "is required"}.Error())
	assert.Equal(t, "f.yaml: empty scenario", Problem{File: "f.yaml", Msg: "empty scenario"}.Error())
	assert.Equal(t, "name: is required", Problem{Path: "name", Msg: "is required"}.Error())
	assert.Equal(t, "a: x\nb: y", Problems{{Path: "a", Msg: "x"}, {Path: "b", Msg: "y"}}.Error())
}

// TestReadFileMissing: a file that does not exist is an ordinary error.
func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestParseTimelineAfterStepsLoad: a timeline action after the end of the
// load is refused also when a steps pacer gives the load's duration.
func TestParseTimelineAfterStepsLoad(t *testing.T) {
	_, err := Parse([]byte(`name: steps-late
description: an action after a steps load that omits load.duration
mock:
  timeline:
    - {at: 100s, clear_rules: true}
load:
  pacer:
    type: steps
    steps: [{rate: 10, duration: 2s}]
expect: [delivery.lost == 0]
`), "steps-late.yaml")
	if err == nil {
		t.Fatal("an action after the end of a steps load was accepted")
	}
	assert.Contains(t, err.Error(), "mock.timeline[0].at: 1m40s is outside the load (0 to 2s)")
}

// TestParseTaggedScalarIntoList: a YAML tag on a scalar where a list or a
// mapping belongs is an error, not a crash (wxload validate would print a
// goroutine dump).
func TestParseTaggedScalarIntoList(t *testing.T) {
	for name, src := range map[string]string{
		"expect":    "name: t\ndescription: d\nload: {duration: 1s, pacer: {rate: 1}}\nexpect: !!seq\n",
		"templates": "name: t\ndescription: d\nload: {duration: 1s, pacer: {rate: 1}, templates: !x 0}\nexpect: [delivery.lost == 0]\n",
		"stack":     "name: t\ndescription: d\nstack: !foo 1\nload: {duration: 1s, pacer: {rate: 1}}\nexpect: [delivery.lost == 0]\n",
	} {
		t.Run(name, func(t *testing.T) {
			var panicked any
			var err error
			func() {
				defer func() { panicked = recover() }()
				_, err = Parse([]byte(src), "tagged.yaml")
			}()
			if panicked != nil {
				t.Fatalf("Parse panicked (%v): go-yaml v1.19.2 (goccy/go-yaml#735) must be recovered", panicked)
			}
			require.Error(t, err)
		})
	}
}

// TestAppTemplatesAndFollowers: an app may bring its own templates and
// followers; they are checked by the mock's own rules at parse time, and
// the load's template mix must name templates the apps have.
func TestAppTemplatesAndFollowers(t *testing.T) {
	good := `name: custom
description: own templates and followers
mock:
  apps:
    - name: shop
      templates:
        - id: refund_done
          fields: [{key: amount1, type: amount}, {key: thing2, type: thing}]
      followers: {blocked: [oBlockedShopper0001]}
load:
  duration: 2s
  pacer: {rate: 5}
  templates: [{id: refund_done}]
expect: [delivery.lost == 0]
`
	sc, err := Parse([]byte(good), "custom.yaml")
	require.NoError(t, err)
	ma := sc.Mock.Apps[0].MockApp(0)
	assert.Equal(t, "refund_done", ma.Templates[0].ID)
	assert.Equal(t, []string{"oBlockedShopper0001"}, ma.Followers.Blocked)
	assert.NotEqual(t, "wx6d6f636b77786170", ma.AppID, "a named app gets its own appid")

	_, err = Parse([]byte(strings.Replace(good, "type: amount", "type: money", 1)), "custom.yaml")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mock.apps[0]: templates[0].fields[0].type")

	_, err = Parse([]byte(strings.Replace(good, "templates: [{id: refund_done}]", "templates: [{id: order_shipped}]", 1)), "custom.yaml")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `load.templates[0].id: app "shop" has no template "order_shipped"`)
}
