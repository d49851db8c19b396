package reports_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/loadtest"
	"github.com/wxpush/wxpush/loadtest/cli"
)

// wxload runs the command in-process.
func wxload(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = cli.Main(t.Context(), args, func(string) string { return "" }, &o, &e)
	return code, o.String(), e.String()
}

func run(name string) string { return filepath.Join("testdata", "runs", name) }

func TestCLICompareExitCodes(t *testing.T) {
	out := func() string { return filepath.Join(t.TempDir(), "cmp.html") }
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"same run", []string{"compare", run("smoke"), run("smoke"), "--out", out()}, cli.ExitPassed},
		{"regressed", []string{"compare", run("smoke"), run("smoke-regressed"), "--out", out()}, cli.ExitFailed},
		{"improved", []string{"compare", run("smoke-regressed"), run("smoke"), "--out", out()}, cli.ExitPassed},
		{"flags first", []string{"compare", "--out", out(), "--throughput", "-10%", "--p99", "+20%", run("smoke"), run("smoke")}, cli.ExitPassed},
		{"no base", []string{"compare", run("smoke")}, cli.ExitUsage},
		{"three runs", []string{"compare", run("smoke"), run("smoke"), run("smoke")}, cli.ExitUsage},
		{"bad tolerance", []string{"compare", run("smoke"), run("smoke"), "--p99", "lots"}, cli.ExitUsage},
		{"unknown flag", []string{"compare", "--nope", run("smoke"), run("smoke")}, cli.ExitUsage},
		{"not a run", []string{"compare", t.TempDir(), run("smoke"), "--out", out()}, cli.ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := wxload(t, tt.args...)
			if code != tt.want {
				t.Errorf("wxload %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(tt.args, " "), code, tt.want, stdout, stderr)
			}
		})
	}
}

// A comparison that only regresses on throughput passes once the
// throughput tolerance allows it.
func TestCLICompareTolerances(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"base", "next"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := loadtest.ReadSummary(run("smoke"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, s *loadtest.Summary) {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, name, loadtest.SummaryFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("base", s)
	s.Accept.Throughput *= 0.8
	write("next", s)
	base, next := filepath.Join(dir, "base"), filepath.Join(dir, "next")
	if code, stdout, _ := wxload(t, "compare", base, next); code != cli.ExitFailed || !strings.Contains(stdout, "REGRESSED") {
		t.Errorf("throughput -20%% with the default tolerance: exit %d, want 1\n%s", code, stdout)
	}
	if code, stdout, _ := wxload(t, "compare", "--throughput", "-25%", base, next); code != cli.ExitPassed {
		t.Errorf("throughput -20%% with --throughput -25%%: exit %d, want 0\n%s", code, stdout)
	}
	for _, name := range []string{"compare-vs-base.html", "compare-vs-base-2.html"} {
		if _, err := os.Stat(filepath.Join(next, name)); err != nil {
			t.Errorf("no default comparison page %s (the second must not overwrite the first): %v", name, err)
		}
	}
}

// TestCLICompareDifferentScenarios: two runs of different scenarios are
// refused with exit 2 and a message that says so, and no page, unless
// --force.
func TestCLICompareDifferentScenarios(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cmp.html")
	code, stdout, stderr := wxload(t, "compare", run("smoke"), run("quota-45009"), "--out", out)
	if code != cli.ExitUsage {
		t.Errorf("compare smoke quota-45009: exit %d, want 2\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"different scenarios", `"smoke"`, `"quota-45009"`, "--force"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal does not say %q: %s", want, stderr)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused comparison wrote its page")
	}
	code, stdout, stderr = wxload(t, "compare", "--force", run("smoke"), run("quota-45009"), "--out", out)
	if code == cli.ExitUsage {
		t.Errorf("compare --force smoke quota-45009: exit %d\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "The runs are of different scenarios") {
		t.Error("a forced comparison of two scenarios does not warn about it")
	}
}

func TestCLIIndex(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out", "index.html")
	if code, stdout, stderr := wxload(t, "index", filepath.Join("testdata", "runs"), "--out", out); code != cli.ExitPassed {
		t.Fatalf("wxload index: exit %d\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "quota-45009") {
		t.Error("the index does not list quota-45009")
	}
	if code, _, _ := wxload(t, "index", filepath.Join(t.TempDir(), "missing")); code != cli.ExitUsage {
		t.Errorf("wxload index of a missing directory: exit %d, want 2", code)
	}
	if code, _, _ := wxload(t, "index", "a", "b"); code != cli.ExitUsage {
		t.Errorf("wxload index a b: exit %d, want 2", code)
	}
}

func TestCLIReportWritesHTML(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{loadtest.SummaryFile, loadtest.SeriesFile} {
		b, err := os.ReadFile(filepath.Join(run("quota-45009"), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, stdout, stderr := wxload(t, "report", dir); code != cli.ExitPassed {
		t.Fatalf("wxload report: exit %d\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, loadtest.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`<svg class="chart"`)) {
		t.Error("wxload report did not write the HTML report with charts (is cli.Render wired to reports.Render?)")
	}
}
