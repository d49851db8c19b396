package loadtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/scenarios"
)

func exprs(ss ...string) []scenarios.Expectation {
	out := make([]scenarios.Expectation, len(ss))
	for i, s := range ss {
		out[i] = scenarios.Expectation{Expr: s}
	}
	return out
}

// TestCheckExpectations: expressions over summary.json's fields pass;
// unknown fields (typos) and bad syntax are rejected; keys under a
// map-valued field are free.
func TestCheckExpectations(t *testing.T) {
	for _, ok := range []string{
		"delivery.lost == 0",
		"accept.latency_ms.p99 < 25",
		"mock.token_calls + mock.stable_token_calls <= 40",
		`mock.by_errcode["-1"] > 0`,
		`(mock.by_errcode["45009"] ?? 0) >= 1`,
		"delivery.apps.a.delivered == delivery.apps.a.accepted",
		`delivery.failed_by_reason["user block"] > 0`,
		"generator.saturated == false",
		"!generator.saturated",
		"accept.success_ratio >= 0.99 && delivery.duplicates == 0",
		"delivery.delivered == delivery.accepted - delivery.failed",
		"len(run.warnings) == 0",
		"run.timeline_errors == 0",
		"service.attempts_by_errcode['40001'] <= 10",
		"delivery.e2e_latency_ms.p99 < 2000",
	} {
		assert.NoError(t, CheckExpectations(exprs(ok)), ok)
	}
	for _, tc := range []struct{ expr, want string }{
		{"delivery.lots == 0", "summary.json has no field delivery.lots"},
		{"delivery.e2e_latency_ms.p999 < 5", "no field delivery.e2e_latency_ms.p999"},
		{"accept.latency.p99 < 25", "no field accept.latency"},
		{"mocks.token_calls <= 3", "no field mocks"},
		{"lost == 0", "no field lost"},
		{"delivery.lost ==", `expect[0] "delivery.lost ==": unexpected token EOF`},
	} {
		err := CheckExpectations(exprs(tc.expr))
		require.Error(t, err, tc.expr)
		assert.Contains(t, err.Error(), tc.want, tc.expr)
	}
	// Every problem is reported, each with its index.
	err := CheckExpectations(exprs("delivery.lost == 0", "delivery.lots == 0", "accept.rat > 1"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `expect[1] "delivery.lots == 0"`)
	assert.Contains(t, err.Error(), `expect[2] "accept.rat > 1"`)
	assert.NotContains(t, err.Error(), "expect[0]")
}

// TestCheckExpectationsNotBoolean: an expression that is not a condition
// is refused before the run (else the run goes ahead and the expectation
// fails afterwards, exit 1 instead of 2).
func TestCheckExpectationsNotBoolean(t *testing.T) {
	for _, e := range []string{"delivery.lost", "delivery.lost + 1"} {
		t.Run(e, func(t *testing.T) {
			if CheckExpectations(exprs(e)) == nil {
				t.Errorf("CheckExpectations accepted %q, which is not a condition", e)
			}
		})
	}
}

// TestCheckExpectationsCatalog: every catalog scenario's expectations read
// fields summary.json has.
func TestCheckExpectationsCatalog(t *testing.T) {
	all, err := scenarios.Catalog()
	require.NoError(t, err)
	for _, sc := range all {
		assert.NoError(t, CheckExpectations(sc.Expect), sc.Name)
	}
}

// TestSummaryEvaluate: the verdict is the conjunction of the
// expectations; each result carries its label, the value of the first path
// it reads, and the error of one that cannot be evaluated.
func TestSummaryEvaluate(t *testing.T) {
	s := &Summary{Scenario: "x"}
	s.Delivery.Accepted, s.Delivery.Delivered, s.Delivery.Lost = 100, 99, 1
	s.Accept.LatencyMS.P99 = 12.5
	s.zeroMaps()
	s.Mock.ByErrcode["-1"] = 7
	s.Delivery.Apps["shop"] = AppFlow{Accepted: 100, Delivered: 99, Lost: 1}

	s.Evaluate([]scenarios.Expectation{
		{Expr: "accept.latency_ms.p99 < 25"},
		{Name: "some system busy", Expr: `mock.by_errcode["-1"] > 0`},
		{Expr: "delivery.apps.shop.delivered >= 99"},
	})
	assert.True(t, s.Passed)
	require.Len(t, s.Expectations, 3)
	assert.Equal(t, ExpectationResult{Name: "accept.latency_ms.p99 < 25", Expr: "accept.latency_ms.p99 < 25", Value: 12.5, Passed: true}, s.Expectations[0])
	assert.Equal(t, "some system busy", s.Expectations[1].Name)
	assert.EqualValues(t, 7, s.Expectations[1].Value, "the measured value of an indexed path")
	assert.EqualValues(t, 99, s.Expectations[2].Value)

	s.Evaluate([]scenarios.Expectation{
		{Expr: "delivery.lost == 0"},
		{Expr: "delivery.delivered == delivery.accepted"},
		{Expr: "accept.latency_ms.p99 < 25"},
	})
	assert.False(t, s.Passed)
	require.Len(t, s.Expectations, 3, "a new evaluation replaces the results")
	assert.False(t, s.Expectations[0].Passed)
	assert.EqualValues(t, 1, s.Expectations[0].Value, "the measured value is the first path's")
	assert.False(t, s.Expectations[1].Passed)
	assert.EqualValues(t, 99, s.Expectations[1].Value)
	assert.True(t, s.Expectations[2].Passed)

	s.Evaluate(exprs("delivery.lost +", "delivery.lost"))
	assert.False(t, s.Passed)
	assert.NotEmpty(t, s.Expectations[0].Error, "a syntax error is a failed expectation with an error")
	assert.NotEmpty(t, s.Expectations[1].Error, "a non-boolean expression is a failed expectation with an error")

	s.Evaluate(nil)
	assert.True(t, s.Passed, "no expectations: nothing failed")
	assert.Empty(t, s.Expectations)
}

// TestSummaryJSONFields: summary.json has the fields design.md §6
// promises, with the maps present as {} once zeroMaps ran.
func TestSummaryJSONFields(t *testing.T) {
	s := &Summary{}
	s.zeroMaps()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	get := func(path string) any {
		var cur any = m
		for _, p := range strings.Split(path, ".") {
			obj, ok := cur.(map[string]any)
			require.True(t, ok, "%s: %v is not an object", path, cur)
			v, ok := obj[p]
			require.True(t, ok, "summary.json has no %s", path)
			cur = v
		}
		return cur
	}
	for _, p := range []string{
		"scenario", "passed", "expectations",
		"accept.requests", "accept.rate", "accept.throughput", "accept.success_ratio",
		"accept.latency_ms.p50", "accept.latency_ms.p90", "accept.latency_ms.p99", "accept.latency_ms.max",
		"delivery.accepted", "delivery.delivered", "delivery.failed", "delivery.duplicates", "delivery.lost",
		"delivery.e2e_latency_ms.p50", "delivery.e2e_latency_ms.p90", "delivery.e2e_latency_ms.p99", "delivery.e2e_latency_ms.max",
		"delivery.drain_seconds",
		"mock.token_calls", "mock.stable_token_calls", "mock.send_calls", "mock.by_errcode",
		"generator.target_rate", "generator.achieved_rate", "generator.saturated",
	} {
		get(p)
	}
	assert.Equal(t, map[string]any{}, get("mock.by_errcode"))
	assert.Equal(t, []any{}, get("expectations"))
}

// TestTextReport: the text report states the verdict, the figures and
// each expectation with its measured value.
func TestTextReport(t *testing.T) {
	s := &Summary{Scenario: "smoke", Description: "a quick check"}
	s.Delivery.Accepted, s.Delivery.Delivered, s.Delivery.Lost = 10, 9, 1
	s.zeroMaps()
	s.Evaluate([]scenarios.Expectation{{Expr: "delivery.lost == 0"}, {Name: "all accepted", Expr: "delivery.accepted >= 10"}})
	txt := TextReport(s)
	assert.True(t, strings.HasPrefix(txt, "scenario smoke: FAILED\n"), txt)
	assert.Contains(t, txt, "a quick check")
	assert.Contains(t, txt, "accepted 10: delivered 9")
	assert.Contains(t, txt, "FAIL delivery.lost == 0  (measured 1)")
	assert.Contains(t, txt, "ok   all accepted  [delivery.accepted >= 10]  (measured 10)")

	s.Delivery.Lost = 0
	s.Evaluate([]scenarios.Expectation{{Expr: "delivery.lost == 0"}})
	assert.True(t, strings.HasPrefix(TextReport(s), "scenario smoke: PASSED\n"))
}

// TestPlainReport: without a renderer, index.html is the text report,
// escaped, in a page with no external reference.
func TestPlainReport(t *testing.T) {
	dir := t.TempDir()
	s := &Summary{Scenario: "<x>", Description: "a & b", Passed: true}
	s.zeroMaps()
	require.NoError(t, WritePlainReport(dir, s))
	b, err := os.ReadFile(filepath.Join(dir, ReportFile))
	require.NoError(t, err)
	page := string(b)
	assert.Contains(t, page, "&lt;x&gt;: PASSED")
	assert.Contains(t, page, "a &amp; b")
	assert.NotContains(t, page, "<x>")
	assert.NotContains(t, page, "http://")
	assert.NotContains(t, page, "https://")
}

// TestSmokeLatencyBound: the smoke scenario's latency expectation holds on
// a busy machine when nothing is wrong, and fails on a real fault.
func TestSmokeLatencyBound(t *testing.T) {
	sc, err := scenarios.Get("smoke")
	require.NoError(t, err)
	var latency []scenarios.Expectation
	for _, e := range sc.Expect {
		if strings.Contains(e.Expr, "accept.latency_ms.p99") {
			latency = append(latency, e)
		}
	}
	require.Len(t, latency, 1)
	for _, tc := range []struct {
		name            string
		p99, lag, probe float64
		passed          bool
	}{
		{"idle", 4.9, 1.2, 0.2, true},
		{"busy 2-core machine, nothing wrong", 231, 92, 8, true},
		{"very busy machine", 600, 250, 60, true},
		{"a stall on the accept path, idle machine", 400, 2, 0.3, false},
		{"a stall on a busy machine", 900, 92, 8, false},
	} {
		s := &Summary{}
		s.zeroMaps()
		s.Accept.LatencyMS.P99, s.Generator.LagMS.P99, s.Generator.ProbeMS.P99 = tc.p99, tc.lag, tc.probe
		s.Evaluate(latency)
		assert.Equal(t, tc.passed, s.Passed, "%s: p99 %.0f ms, lag p99 %.0f ms, probe p99 %.1f ms: %+v", tc.name, tc.p99, tc.lag, tc.probe, s.Expectations)
	}
}
