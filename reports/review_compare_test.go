package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompareRefusesSameNameDifferentScenario: a scenario file that keeps
// the catalog's name but changes the deployment (four instances behind a
// remote stack instead of one embedded) is a different scenario: its
// figures do not measure the same thing as the catalog run's, and compare
// must refuse it without --force just as it refuses two names.
func TestCompareRefusesSameNameDifferentScenario(t *testing.T) {
	next := copyRun(t, "smoke")
	p := filepath.Join(next, "summary.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `"instances": 1,`, `"instances": 4,`, 1)
	s = strings.Replace(s, `"mode": "embedded",`, `"mode": "remote",`, 1)
	s = strings.Replace(s, "One wxpushd instance in front of mockwx at 50 requests/s", "Four wxpushd instances in front of mockwx at 500 requests/s", 1)
	if s == string(b) {
		t.Fatal("the fixture changed: nothing replaced")
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewComparison(filepath.Join("testdata", "runs", "smoke"), next, DefaultTolerances())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Comparable(); err == nil {
		t.Error("a one-instance embedded smoke run and a four-instance remote run of a different \"smoke\" are comparable without --force")
	}
}
