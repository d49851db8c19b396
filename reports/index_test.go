package reports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/loadtest"
)

func TestIndex(t *testing.T) {
	root := t.TempDir()
	runs := filepath.Join(root, "runs")
	for _, name := range fixtures {
		src := copyRun(t, name)
		if err := os.MkdirAll(runs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(src, filepath.Join(runs, name)); err != nil {
			t.Fatal(err)
		}
	}
	// Only smoke has a report; a directory without summary.json is not a
	// run; a broken summary is listed as unreadable.
	if err := Render(filepath.Join(runs, "smoke")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(runs, "not-a-run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(runs, "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runs, "broken", loadtest.SummaryFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(root, "reports", "out", "index.html")
	if err := Index(runs, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := strings.ReplaceAll(string(b), root, "ROOT")
	// Newest first, the unreadable one last.
	order := []string{">smoke-regressed<", ">quota-45009<", ">smoke</a>", ">broken<"}
	last := -1
	for _, name := range order {
		i := strings.Index(page, name)
		if i < 0 {
			t.Fatalf("the index lacks %s", name)
		}
		if i < last {
			t.Errorf("%s is out of order (want newest first: %v)", name, order)
		}
		last = i
	}
	if !strings.Contains(page, `<a href="../../runs/smoke/index.html">smoke</a>`) {
		t.Error("no relative link to the smoke report")
	}
	if strings.Contains(page, "quota-45009/index.html") {
		t.Error("a link to a report that does not exist")
	}
	if strings.Contains(page, "not-a-run") {
		t.Error("a directory without summary.json is listed")
	}
	if !strings.Contains(page, "4 runs in <code>ROOT/runs</code>: 2 passed, 2 failed.") {
		t.Errorf("the counts are wrong in %q", page[strings.Index(page, "<p class=\"meta\">"):][:120])
	}
	golden(t, "index.html", []byte(page))
}

func TestIndexMissingDir(t *testing.T) {
	if err := Index(filepath.Join(t.TempDir(), "nope"), filepath.Join(t.TempDir(), "i.html")); err == nil {
		t.Error("Index of a missing directory succeeded")
	}
}
