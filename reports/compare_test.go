package reports

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/loadtest"
)

// summary is a run's summary with the figures the checks read.
func summary(throughput, p99 float64, lost, dups int) *loadtest.Summary {
	s := &loadtest.Summary{Scenario: "steady", Passed: true}
	s.Accept.Throughput = throughput
	s.Accept.LatencyMS.P99 = p99
	s.Delivery.Lost, s.Delivery.Duplicates = lost, dups
	return s
}

func TestChecks(t *testing.T) {
	base := summary(200, 10, 0, 0)
	tests := []struct {
		name      string
		next      *loadtest.Summary
		tol       Tolerances
		regressed []string // the checks that fail
	}{
		{"same", summary(200, 10, 0, 0), DefaultTolerances(), nil},
		{"throughput -20%", summary(160, 10, 0, 0), DefaultTolerances(), []string{"throughput"}},
		{"throughput -5% within -10%", summary(190, 10, 0, 0), DefaultTolerances(), nil},
		{"throughput exactly -10%", summary(180, 10, 0, 0), DefaultTolerances(), nil},
		{"throughput up", summary(400, 10, 0, 0), DefaultTolerances(), nil},
		{"throughput -20% within -25%", summary(160, 10, 0, 0), Tolerances{Throughput: -0.25, P99: 0.2}, nil},
		{"tolerance sign ignored", summary(160, 10, 0, 0), Tolerances{Throughput: 0.10, P99: -0.2}, []string{"throughput"}},
		{"p99 +30%", summary(200, 13, 0, 0), DefaultTolerances(), []string{"accept latency p99"}},
		{"p99 +10% within +20%", summary(200, 11, 0, 0), DefaultTolerances(), nil},
		{"p99 halved", summary(200, 5, 0, 0), DefaultTolerances(), nil},
		{"one lost", summary(200, 10, 1, 0), DefaultTolerances(), []string{"lost messages"}},
		{"one duplicate", summary(200, 10, 0, 1), DefaultTolerances(), []string{"duplicate deliveries"}},
		{"everything", summary(100, 100, 3, 2), DefaultTolerances(), []string{"throughput", "accept latency p99", "lost messages", "duplicate deliveries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Checks(base, tt.next, tt.tol) {
				if c.Regressed {
					got = append(got, c.Name)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.regressed, ",") {
				t.Errorf("Checks(base 200/s p99 10 ms, next %.0f/s p99 %.0f ms lost %d dups %d, %+v) regressed %v, want %v",
					tt.next.Accept.Throughput, tt.next.Accept.LatencyMS.P99, tt.next.Delivery.Lost, tt.next.Delivery.Duplicates, tt.tol, got, tt.regressed)
			}
		})
	}
}

func TestChecksZeroBase(t *testing.T) {
	// A baseline without throughput or latency cannot be regressed from.
	for _, c := range Checks(summary(0, 0, 0, 0), summary(0, 50, 0, 0), DefaultTolerances()) {
		if c.Regressed {
			t.Errorf("%s regressed against an empty baseline", c.Name)
		}
	}
}

func TestParsePercent(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"-10%", -0.10, true}, {"+20%", 0.20, true}, {"15", 0.15, true}, {" 2.5 % ", 0.025, true}, {"0", 0, true},
		{"", 0, false}, {"%", 0, false}, {"ten", 0, false}, {"NaN%", 0, false}, {"10%%", 0, false},
	} {
		got, err := ParsePercent(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (got-tt.want > 1e-12 || tt.want-got > 1e-12)) {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestCompare(t *testing.T) {
	runs := filepath.Join("testdata", "runs")
	tests := []struct {
		base, next string
		tol        Tolerances
		want       bool
	}{
		{"smoke", "smoke", DefaultTolerances(), false},
		{"smoke", "smoke-regressed", DefaultTolerances(), true}, // -20% throughput, p99 x1.5, 2 lost
		{"smoke-regressed", "smoke", DefaultTolerances(), false},
	}
	for _, tt := range tests {
		t.Run(tt.base+" vs "+tt.next, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sub", "cmp.html")
			got, err := Compare(filepath.Join(runs, tt.base), filepath.Join(runs, tt.next), out, tt.tol)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Compare(%s, %s) regressed = %v, want %v", tt.base, tt.next, got, tt.want)
			}
			page, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			verdict := "✓ NO REGRESSION"
			if tt.want {
				verdict = "✗ REGRESSED"
			}
			if !strings.Contains(string(page), verdict) {
				t.Errorf("the page does not say %q", verdict)
			}
		})
	}
}

func TestCompareGolden(t *testing.T) {
	c, err := NewComparison(filepath.Join("testdata", "runs", "smoke"), filepath.Join("testdata", "runs", "smoke-regressed"), DefaultTolerances())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if _, err := c.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"-20.0%", "×0.80", "&#43;50.0%", "×1.50", "lost messages", "overlaid", "base p99", "new p99"} {
		if !strings.Contains(strings.ToLower(page), strings.ToLower(want)) {
			t.Errorf("the comparison lacks %q", want)
		}
	}
	golden(t, "compare.html", []byte(page))
}

func TestCompareMissingRun(t *testing.T) {
	if _, err := Compare(t.TempDir(), filepath.Join("testdata", "runs", "smoke"), filepath.Join(t.TempDir(), "x.html"), DefaultTolerances()); err == nil {
		t.Error("Compare with a base without summary.json succeeded")
	}
}

// TestCompareDefaultOut: without --out each comparison gets a new file
// in the new run's directory, named after the base; none overwrites an
// earlier one.
func TestCompareDefaultOut(t *testing.T) {
	next := copyRun(t, "smoke")
	base := filepath.Join("testdata", "runs", "smoke")
	c, err := NewComparison(base, next, DefaultTolerances())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		p, err := c.Write("")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(p))
	}
	want := []string{"compare-vs-smoke.html", "compare-vs-smoke-2.html", "compare-vs-smoke-3.html"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("three comparisons wrote %v, want %v", got, want)
	}
	for _, name := range want {
		if _, err := os.Stat(filepath.Join(next, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An explicit place is written as told, again and again.
	out := filepath.Join(t.TempDir(), "cmp.html")
	for range 2 {
		if p, err := c.Write(out); err != nil || p != out {
			t.Errorf("Write(%s) = %s, %v", out, p, err)
		}
	}
}

// TestCompareRefusesDifferentScenarios: Compare refuses runs of two
// scenarios and writes nothing; NewComparison says why with Comparable.
func TestCompareRefusesDifferentScenarios(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cmp.html")
	_, err := Compare(filepath.Join("testdata", "runs", "smoke"), filepath.Join("testdata", "runs", "quota-45009"), out, DefaultTolerances())
	if !errors.Is(err, ErrDifferentScenarios) {
		t.Errorf("Compare(smoke, quota-45009) = %v, want ErrDifferentScenarios", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused comparison wrote %s (%v)", out, err)
	}
	c, err := NewComparison(filepath.Join("testdata", "runs", "smoke"), filepath.Join("testdata", "runs", "smoke-regressed"), DefaultTolerances())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Comparable(); err != nil {
		t.Errorf("two smoke runs: %v", err)
	}
}

// TestCompareDeltasFromRawValues: the delta and ratio columns are computed
// from the runs' figures, not from the rounded figures the table shows.
func TestCompareDeltasFromRawValues(t *testing.T) {
	base, next := summary(100.4, 10.04, 0, 0), summary(100.6, 10.06, 0, 0)
	base.Accept.Rate, next.Accept.Rate = 100.4, 100.6
	c := &Comparison{Base: &Report{Summary: base, Series: &loadtest.Series{}}, New: &Report{Summary: next, Series: &loadtest.Series{}}, Tolerances: DefaultTolerances()}
	c.Checks = Checks(base, next, c.Tolerances)
	rows := map[string]diffRow{}
	for _, r := range c.view().Rows {
		rows[r.Name] = r
	}
	for _, tc := range []struct {
		name                    string
		base, new, delta, ratio string
	}{
		// Shown as 100 and 101 (+1.0% if computed from them): really +0.2%.
		{"request rate", "100/s", "101/s", "+0.2%", "×1.00"},
		{"throughput (successful)", "100/s", "101/s", "+0.2%", "×1.00"},
		// Shown as 10.0 ms both: really +0.2%.
		{"accept p99", "10.0 ms", "10.1 ms", "+0.2%", "×1.00"},
	} {
		r := rows[tc.name]
		if r.Base != tc.base || r.New != tc.new || r.Delta != tc.delta || r.Ratio != tc.ratio {
			t.Errorf("%s: %s → %s, delta %s, ratio %s; want %s → %s, delta %s, ratio %s", tc.name, r.Base, r.New, r.Delta, r.Ratio, tc.base, tc.new, tc.delta, tc.ratio)
		}
	}
}
