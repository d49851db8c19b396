package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

const composeFile = "../docker-compose.yml"

// composeService is the part of a compose service these tests read.
type composeService struct {
	Image string `json:"image"`
	// Build is a context path or a map with one.
	Build any `json:"build"`
}

// buildContext is the context directory of a service's build: section.
func (s composeService) buildContext() string {
	switch b := s.Build.(type) {
	case string:
		return b
	case map[string]any:
		c, _ := b["context"].(string)
		return c
	}
	return ""
}

// localImage matches an image reference that only a local build makes:
// ${VAR:-wxpush/NAME:local}.
var localImage = regexp.MustCompile(`^\$\{[A-Z_]+:-wxpush/([a-z]+):local\}$`)

// TestComposeBuildsEverythingLocally keeps the promise of deploy/README.md:
// on a machine that cannot pull, after `make images` a plain `docker
// compose up -d` works. So every service, in every profile, has a build:
// section under deploy/ whose Dockerfile is FROM scratch and copies only
// the rootfs/ that deploy/build.sh fills, and an image name (by default)
// that no registry serves.
func TestComposeBuildsEverythingLocally(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	require.NoError(t, err)
	var compose struct {
		Services map[string]composeService `json:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	require.NotEmpty(t, compose.Services)
	script, err := os.ReadFile("build.sh")
	require.NoError(t, err)
	for name, svc := range compose.Services {
		ctx := svc.buildContext()
		if !assert.NotEmpty(t, ctx, "service %s has no build: section, so compose would pull %q", name, svc.Image) {
			continue
		}
		m := localImage.FindStringSubmatch(svc.Image)
		if !assert.NotNil(t, m, "service %s: image %q is not ${VAR:-wxpush/NAME:local}", name, svc.Image) {
			continue
		}
		assert.Equal(t, "deploy/"+m[1], filepath.Clean(ctx), "service %s builds %s from another folder", name, svc.Image)
		dir := filepath.Join("..", ctx)
		froms, copies := readDockerfile(t, filepath.Join(dir, "Dockerfile"))
		assert.Equal(t, []string{"scratch"}, froms, "%s/Dockerfile must be FROM scratch only: nothing can be pulled", ctx)
		assert.Equal(t, []string{"rootfs/"}, copies, "%s/Dockerfile may copy only the rootfs/ that deploy/build.sh fills", ctx)
		ignore, err := os.ReadFile(filepath.Join(dir, ".dockerignore"))
		if assert.NoError(t, err, "%s needs a .dockerignore (the context is the folder)", ctx) {
			assert.Contains(t, string(ignore), "!rootfs")
		}
		assert.Regexp(t, `(?m)^\t`+m[1]+`\)`, string(script), "deploy/build.sh does not fill %s", ctx)
	}
}

// readDockerfile returns a Dockerfile's FROM images and COPY sources.
func readDockerfile(t *testing.T, path string) (froms, copies []string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
		case "COPY", "ADD":
			copies = append(copies, fields[1:len(fields)-1]...)
		}
	}
	require.NoError(t, sc.Err())
	return froms, copies
}

// TestComposeConfigIsValid runs `docker compose config` (or docker-compose)
// over every profile when one is installed.
func TestComposeConfigIsValid(t *testing.T) {
	var cmd *exec.Cmd
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = exec.Command("docker", "compose", "-f", composeFile, "--profile", "loadtest", "--profile", "observability", "config", "-q")
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command("docker-compose", "-f", composeFile, "--profile", "loadtest", "--profile", "observability", "config", "-q")
	} else {
		t.Skip("neither docker compose nor docker-compose is installed")
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}
