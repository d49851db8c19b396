package scenarios

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and a scenario it accepts validates again
// once parsed (defaults filled in), keeps its defaults stable and offers a
// finite, non-negative number of requests. Seeds: the catalog, the bad
// files under testdata/bad, and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	all, err := Catalog()
	if err != nil {
		f.Fatal(err)
	}
	for _, sc := range all {
		src, err := Source(sc.Name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	bad, _ := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	for _, file := range bad {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := parseNoPanic(t, data)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("an empty error for %q", data)
			}
			return
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("parsed, but does not validate again: %v\n%s", err, data)
		}
		again := sc.WithDefaults()
		if again.Name != sc.Name || again.Load.Duration != sc.Load.Duration || again.Stack.Instances != sc.Stack.Instances {
			t.Fatalf("WithDefaults changed a parsed scenario:\n%+v\n%+v", sc, again)
		}
		total := sc.Load.TotalHits()
		if total < 0 || total != total || total > float64(MaxRate)*MaxDuration.Seconds()*2 {
			t.Fatalf("TotalHits %v for\n%s", total, data)
		}
		if sc.Load.Duration.D() <= 0 {
			t.Fatalf("a parsed scenario has no duration:\n%s", data)
		}
		if len(sc.Expect) == 0 || sc.Name == "" {
			t.Fatalf("a parsed scenario lacks its name or expectations:\n%s", data)
		}
	})
}

// parseNoPanic calls Parse and fails the test if it panics, except for the
// known go-yaml panic (see TestParseTaggedScalarIntoList), which skips the
// input so that fuzzing goes on looking for other problems.
func parseNoPanic(t *testing.T, data []byte) (sc Scenario, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Parse panicked on %q: %v\n%s", data, r, debug.Stack())
		}
	}()
	return Parse(data, "fuzz.yaml")
}
