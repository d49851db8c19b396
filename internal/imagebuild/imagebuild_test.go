package imagebuild

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestModuleRootIsThisRepository(t *testing.T) {
	root, err := ModuleRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "mockwx", "Dockerfile")); err != nil {
		t.Errorf("module root %s has no deploy/mockwx/Dockerfile: %v", root, err)
	}
}

func TestContentTagFollowsTheBinaryAndTheDockerfile(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "mockwx")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(bin, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tag := func(dockerfile string) string {
		t.Helper()
		got, err := contentTag(bin, []byte(dockerfile))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	write("binary v1")
	a := tag("FROM scratch\n")
	if !regexp.MustCompile(`^src-[0-9a-f]{12}$`).MatchString(a) {
		t.Fatalf("tag %q, want src- and 12 hex digits", a)
	}
	if b := tag("FROM scratch\n"); b != a {
		t.Errorf("the same content gives %q and %q", a, b)
	}
	if b := tag("FROM scratch\nUSER 1\n"); b == a {
		t.Errorf("another Dockerfile gives the same tag %q", a)
	}
	write("binary v2")
	if b := tag("FROM scratch\n"); b == a {
		t.Errorf("another binary gives the same tag %q", a)
	}
	if _, err := contentTag(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("a missing binary gave a tag")
	}
}

func TestBuildNeedsNamePackageAndRepo(t *testing.T) {
	for _, img := range []Image{{}, {Name: "mockwx", Package: "x"}, {Name: "mockwx", Repo: "r"}, {Package: "x", Repo: "r"}} {
		_, err := Build(t.Context(), nil, img)
		if err == nil || !strings.Contains(err.Error(), "needs Name, Package and Repo") {
			t.Errorf("Build(%+v): %v, want it to name the missing fields", img, err)
		}
	}
}
