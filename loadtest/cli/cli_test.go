package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/loadtest"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// wxload runs the command in-process and returns its exit status, stdout
// and stderr.
func wxload(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncbuf.Buffer
	getenv := func(k string) string { return env[k] }
	code := Main(t.Context(), args, getenv, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// writeScenario writes a scenario file into a fresh directory.
func writeScenario(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yaml")
	require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
	return p
}

// shortScenario is 3 s at 30/s on one instance, with the given
// expectations.
func shortScenario(name string, expect ...string) string {
	var b strings.Builder
	b.WriteString(`name: ` + name + `
description: a short in-process run for the tests
stack:
  instances: 1
  workers: 8
mock:
  settings: {callback_delay_ms: 10}
load:
  duration: 3s
  pacer: {rate: 30}
  recipients: 50
drain_timeout: 45s
expect:
`)
	for _, e := range expect {
		b.WriteString("  - " + e + "\n")
	}
	return b.String()
}

func readSummary(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, loadtest.SummaryFile))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// TestRunPasses runs a short scenario file on the embedded stack whose
// expectations hold: exit 0, and a run directory with every file.
func TestRunPasses(t *testing.T) {
	file := writeScenario(t, "short-pass", shortScenario("short-pass",
		"delivery.lost == 0",
		"delivery.duplicates == 0",
		"delivery.delivered == delivery.accepted",
		"delivery.accepted >= 60",
		"accept.success_ratio == 1",
		`mock.by_errcode["0"] >= delivery.delivered`,
		"delivery.apps.default.delivered == delivery.delivered",
	))
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := wxload(t, nil, "run", file, "--quiet", "--no-self-check", "--out", out)
	require.Equal(t, ExitPassed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "short-pass PASSED")
	assert.Contains(t, stdout, filepath.Join(out, loadtest.ReportFile))
	assert.Empty(t, stderr, "--quiet")

	for _, f := range []string{loadtest.SummaryFile, loadtest.SeriesFile, loadtest.ResultsFile, loadtest.LedgerFile, loadtest.ReportFile, loadtest.TextFile} {
		st, err := os.Stat(filepath.Join(out, f))
		if assert.NoError(t, err, f) {
			assert.Positive(t, st.Size(), f)
		}
	}
	s, err := loadtest.ReadSummary(out)
	require.NoError(t, err)
	assert.Equal(t, "short-pass", s.Scenario)
	assert.True(t, s.Passed)
	assert.Len(t, s.Expectations, 7)
	for _, e := range s.Expectations {
		assert.True(t, e.Passed, "%+v", e)
		assert.NotNil(t, e.Value, "%+v", e)
	}
	assert.Equal(t, "embedded", s.Run.Mode)
	// 3 s at 30/s: 90 requests offered; a late generator may miss the
	// last ones when the load's time is up.
	assert.LessOrEqual(t, s.Accept.Requests, 90)
	assert.GreaterOrEqual(t, s.Accept.Requests, 60)
	assert.Equal(t, s.Accept.Requests, s.Delivery.Accepted)
	assert.Equal(t, s.Delivery.Accepted, s.Delivery.Delivered)
	assert.True(t, s.Delivery.Drained)
	assert.Positive(t, s.Delivery.E2ELatencyMS.P50)
	assert.Positive(t, s.Mock.SendCalls)

	// summary.json carries design.md's fields as JSON.
	m := readSummary(t, out)
	for _, k := range []string{"scenario", "passed", "expectations", "accept", "delivery", "mock", "generator"} {
		assert.Contains(t, m, k)
	}
	// The ledger extract has one line per ledger entry of the run, each
	// with its marker.
	ledger, err := os.ReadFile(filepath.Join(out, loadtest.LedgerFile))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(ledger)), "\n")
	assert.GreaterOrEqual(t, len(lines), s.Delivery.Delivered)
	var rec loadtest.LedgerRecord
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	assert.NotEmpty(t, rec.Marker)
	ser, err := loadtest.ReadSeries(out)
	require.NoError(t, err)
	assert.NotEmpty(t, ser.Seconds)

	// wxload report renders the directory again and exits with its verdict.
	code, stdout, stderr = wxload(t, nil, "report", out)
	assert.Equal(t, ExitPassed, code, stderr)
	assert.Contains(t, stdout, "scenario short-pass: PASSED")
}

// TestRunFails: a run whose expectations cannot hold exits 1 and still
// writes its run directory with the failed expectation and its value.
func TestRunFails(t *testing.T) {
	file := writeScenario(t, "short-fail", shortScenario("short-fail",
		"delivery.lost == 0",
		"delivery.delivered == 0",
	))
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := wxload(t, nil, "run", file, "--quiet", "--no-self-check", "--out", out)
	require.Equal(t, ExitFailed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "short-fail FAILED")
	s, err := loadtest.ReadSummary(out)
	require.NoError(t, err)
	assert.False(t, s.Passed)
	require.Len(t, s.Expectations, 2)
	assert.True(t, s.Expectations[0].Passed)
	assert.False(t, s.Expectations[1].Passed)
	assert.EqualValues(t, s.Delivery.Delivered, s.Expectations[1].Value)
	assert.Positive(t, s.Delivery.Delivered)
	_, err = os.Stat(filepath.Join(out, loadtest.ReportFile))
	assert.NoError(t, err)

	code, _, _ = wxload(t, nil, "report", out)
	assert.Equal(t, ExitFailed, code, "report exits with the run's verdict")
}

// TestRunUsage: bad files, bad expectations and bad flags exit 2 before
// anything runs.
func TestRunUsage(t *testing.T) {
	bad := writeScenario(t, "bad", "name: bad\ndescription: x\nload:\n  duration: 3s\n  pacer: {rate: 10}\n  ratee: 3\nexpect: [delivery.lost == 0]\n")
	typo := writeScenario(t, "typo", shortScenario("typo", "delivery.lots == 0"))
	noTemplate := writeScenario(t, "no-template", strings.Replace(shortScenario("no-template", "delivery.lost == 0"),
		"recipients: 50", "recipients: 50\n  templates: [{id: nope}]", 1))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad file", []string{"run", bad, "--quiet", "--no-self-check"}, `unknown field "ratee"`},
		{"typo in an expectation", []string{"run", typo, "--quiet", "--no-self-check", "--out", filepath.Join(t.TempDir(), "r")}, "no field delivery.lots"},
		{"unknown template", []string{"run", noTemplate, "--quiet", "--no-self-check", "--out", filepath.Join(t.TempDir(), "r")}, `no template "nope"`},
		{"missing file", []string{"run", filepath.Join(t.TempDir(), "nope.yaml")}, "no such file"},
		{"unknown scenario", []string{"run", "no-such-scenario"}, "no such scenario"},
		{"no scenario", []string{"run", "--quiet"}, "name one scenario"},
		{"two scenarios", []string{"run", "smoke", "steady"}, "name one scenario"},
		{"bad flag", []string{"run", "smoke", "--bogus"}, "bogus"},
		{"remote without a key", []string{"run", "smoke", "--service", "http://127.0.0.1:1"}, "--api-key"},
		{"remote without the mock", []string{"run", "smoke", "--service", "http://127.0.0.1:1", "--api-key", "k", "--no-self-check", "--quiet", "--out", filepath.Join(t.TempDir(), "r")}, "--mock"},
		{"no command", nil, "usage:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"demo with arguments", []string{"demo", "x"}, "no arguments"},
		{"report without a directory", []string{"report"}, "name one run directory"},
		{"report of no run", []string{"report", t.TempDir()}, loadtest.SummaryFile},
		{"validate nothing", []string{"validate"}, "name one or more"},
		{"the cluster scenario on miniredis", []string{"run", "cluster", "--redis", "miniredis", "--quiet", "--no-self-check", "--out", filepath.Join(t.TempDir(), "r")},
			"scenario cluster: stack.redis: cluster runs on a private Redis Cluster, which --redis miniredis contradicts"},
		{"the cluster scenario in containers", []string{"run", "cluster", "--stack", "containers", "--quiet", "--no-self-check", "--out", filepath.Join(t.TempDir(), "r")},
			"only the embedded stack starts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := wxload(t, nil, tc.args...)
			assert.Equal(t, ExitUsage, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			assert.Contains(t, stderr, tc.want)
		})
	}
}

// TestClusterPortsVar: a malformed WXPUSH_REDIS_CLUSTER_PORTS is bad usage
// for run and up, named, before anything starts.
func TestClusterPortsVar(t *testing.T) {
	env := map[string]string{"WXPUSH_REDIS_CLUSTER_PORTS": "7400-"}
	out := filepath.Join(t.TempDir(), "r")
	for _, args := range [][]string{
		{"run", "smoke", "--redis", "cluster", "--quiet", "--no-self-check", "--out", out},
		{"up", "--redis", "cluster", "--addr", "127.0.0.1:0", "--mock-addr", "127.0.0.1:0"},
	} {
		code, _, stderr := wxload(t, env, args...)
		assert.Equal(t, ExitUsage, code, "%q: %s", args, stderr)
		assert.Contains(t, stderr, `WXPUSH_REDIS_CLUSTER_PORTS: port range "7400-"`, "%q", args)
	}
	assert.NoDirExists(t, out, "nothing ran")
}

// TestValidate: wxload validate accepts good files, reports every bad one
// (syntax, semantics, expectation fields) and exits 2 if any is bad.
func TestValidate(t *testing.T) {
	good := writeScenario(t, "good", shortScenario("good", "delivery.lost == 0"))
	bad := writeScenario(t, "bad", "name: bad\ndescription: x\nload:\n  duration: 3s\n  pacer: {type: sine, rate: 10, amp: 20, period: 1s}\nexpect: [delivery.lost == 0]\n")
	typo := writeScenario(t, "typo", shortScenario("typo", "mock.tokens_calls <= 3"))

	code, stdout, stderr := wxload(t, nil, "validate", good)
	assert.Equal(t, ExitPassed, code, stderr)
	assert.Contains(t, stdout, good+": ok (good, 90 requests over 3s, 1 expectations)")

	code, stdout, stderr = wxload(t, nil, "validate", good, bad, typo)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stdout, good+": ok")
	assert.Contains(t, stderr, bad+": invalid")
	assert.Contains(t, stderr, "load.pacer.amp: must be at least 0 and below rate (10)")
	assert.Contains(t, stderr, typo+": invalid")
	assert.Contains(t, stderr, "summary.json has no field mock.tokens_calls")

	// The catalog's own sources validate.
	dir := t.TempDir()
	for _, name := range catalogNames {
		src, err := scenarios.Source(name)
		require.NoError(t, err)
		p := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(p, src, 0o644))
		code, stdout, stderr := wxload(t, nil, "validate", p)
		assert.Equal(t, ExitPassed, code, "%s: %s", name, stderr)
		assert.Contains(t, stdout, "("+name+",")
	}
}

var catalogNames = []string{"smoke", "steady", "ramp-to-saturation", "token-expiry-storm", "system-busy",
	"quota-45009", "latency-spike", "duplicate-flood", "crash-recovery", "redis-restart", "callback-safe-mode", "multi-app", "rate-limited", "user-events", "cluster"}

// TestList: wxload list shows the catalog scenarios, one per line.
func TestList(t *testing.T) {
	code, stdout, stderr := wxload(t, nil, "list")
	require.Equal(t, ExitPassed, code, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 1+len(catalogNames), stdout)
	assert.True(t, strings.HasPrefix(lines[0], "NAME"), lines[0])
	var names []string
	for _, l := range lines[1:] {
		names = append(names, strings.Fields(l)[0])
	}
	assert.ElementsMatch(t, catalogNames, names)
	assert.Contains(t, stdout, "smoke ")
}

// TestSchema: wxload schema prints the JSON Schema.
func TestSchema(t *testing.T) {
	code, stdout, stderr := wxload(t, nil, "schema")
	require.Equal(t, ExitPassed, code, stderr)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), "not JSON:\n%s", stdout)
	assert.Equal(t, "wxload scenario", doc["title"])
	assert.Contains(t, doc, "$defs")
}

// TestHelp: help exits 0 with the usage on stdout.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		code, stdout, _ := wxload(t, nil, arg)
		assert.Equal(t, ExitPassed, code, arg)
		assert.Contains(t, stdout, "wxload run SCENARIO", arg)
	}
}

// startRemote starts a mock and one wxpushd in front of it, as a
// deployment for remote mode, and returns the service's URL and the mock.
func startRemote(t *testing.T, apiKey string) (string, *mockwxtest.Server) {
	t.Helper()
	m := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 1})
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := wxpushd.New(ctx, wxpushd.Config{
		Addr: "127.0.0.1:0", WeChatBaseURL: m.URL, APIKeys: []wechat.Secret{wechat.Secret(apiKey)},
		Apps:    []wxpushd.AppConfig{{Name: "default", AppID: m.App.AppID, Secret: wechat.Secret(m.App.Secret)}},
		Workers: 8, SendTimeout: 5 * time.Second, ShutdownTimeout: 5 * time.Second, LogLevel: "error",
	}, wxpushd.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("wxpushd: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("wxpushd did not stop")
		}
		srv.Close()
	})
	return srv.URL(), m
}

// TestRunRemote runs a short scenario in remote mode against a mockwx and
// a wxpushd started here on loopback, as against a deployment.
func TestRunRemote(t *testing.T) {
	const apiKey = "remote-test-key-0123456789"
	service, mock := startRemote(t, apiKey)

	// The mock has no callback URL here: no delivery reports to wait for.
	src := strings.Replace(shortScenario("short-remote",
		"delivery.lost == 0", "delivery.delivered == delivery.accepted", "delivery.duplicates == 0"),
		"mock:\n  settings: {callback_delay_ms: 10}\n", "mock:\n  apps: [{name: default, callback_mode: \"off\"}]\n", 1)
	file := writeScenario(t, "short-remote", src)
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := wxload(t, map[string]string{"WXLOAD_API_KEY": apiKey},
		"run", file, "--service", service, "--mock", mock.URL, "--quiet", "--no-self-check", "--out", out)
	require.Equal(t, ExitPassed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	s, err := loadtest.ReadSummary(out)
	require.NoError(t, err)
	assert.Equal(t, "remote", s.Run.Mode)
	assert.GreaterOrEqual(t, s.Delivery.Accepted, 60)
	assert.Equal(t, s.Delivery.Accepted, s.Delivery.Delivered)
	st, err := mock.Admin.Stats(t.Context())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Delivered, int64(s.Delivery.Delivered), "the sends reached the mock the test started")

	// A timeline that needs the embedded stack is refused in remote mode.
	killer := writeScenario(t, "killer", strings.Replace(shortScenario("killer", "delivery.lost == 0"),
		"mock:\n", "mock:\n  timeline: [{at: 1s, restart_redis: {}}]\n", 1))
	code, _, stderr = wxload(t, nil, "run", killer, "--service", service, "--mock", mock.URL, "--api-key", apiKey,
		"--quiet", "--no-self-check", "--out", filepath.Join(t.TempDir(), "r"))
	assert.Equal(t, ExitUsage, code, stderr)
	assert.Contains(t, stderr, "restart_redis")
}

// TestRunUserEvents: a short run with simulated users in safe mode:
// every push is answered (the configured replies where a rule matches),
// forwarded to wxload's event webhook receiver exactly once, and after the
// unfollow wave no send reaches the mock for those users once the service
// knows; when they follow again their sends go through.
func TestRunUserEvents(t *testing.T) {
	scenario := `name: short-users
description: a short in-process run with users for the tests
stack: {instances: 1, workers: 8}
mock:
  settings: {callback_delay_ms: 10}
  apps:
    - name: default
      callback_mode: safe
      replies:
        - {on: subscribe, text: "Welcome ]]> <b>${name}</b>"}
        - {keyword: help, text: "help text"}
load:
  duration: 5s
  pacer: {rate: 30}
  recipients: 40
  users:
    rate: 15
    mix: [{type: subscribe}, {type: text, weight: 3}, {type: CLICK}]
    unfollow: {share: 0.25, at: 1s, refollow: 4s}
drain_timeout: 45s
expect:
  - delivery.lost == 0
  - events.acked + events.replied == events.pushed
  - events.forwarded_once == events.pushed
  - events.replies_wrong == 0
  - events.sends_to_unfollowed == 0
`
	file := writeScenario(t, "short-users", scenario)
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := wxload(t, nil, "run", file, "--quiet", "--no-self-check", "--out", out)
	require.Equal(t, ExitPassed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	s, err := loadtest.ReadSummary(out)
	require.NoError(t, err)
	e := s.Events
	t.Logf("events: %+v webhook %+v; not_following %d", e, e.Webhook, s.Delivery.FailedByReason[service.ReasonNotFollowing])
	assert.True(t, e.Enabled)
	assert.GreaterOrEqual(t, e.Pushed, 40, "15/s for 5 s, and the unfollow and refollow waves")
	assert.Equal(t, 10, e.Unfollowed)
	assert.Positive(t, e.Replied, "subscribe and help are replied to")
	require.NotNil(t, e.Webhook)
	assert.Zero(t, e.Webhook.BadSignatures)
	assert.Equal(t, e.Pushed, e.Webhook.DeliveryIDs)
	for _, typ := range []string{"subscribe", "text", "CLICK", "unsubscribe"} {
		assert.Positive(t, e.ByType[typ].Pushed, typ)
	}
	assert.Positive(t, s.Delivery.FailedByReason[service.ReasonNotFollowing], "sends to the unfollowed are skipped")
	page, err := os.ReadFile(filepath.Join(out, loadtest.ReportFile))
	require.NoError(t, err)
	assert.Contains(t, string(page), "Users' pushes")
}
