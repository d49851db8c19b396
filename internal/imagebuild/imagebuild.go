// Package imagebuild builds this repository's FROM-scratch images the way
// deploy/build.sh does, for code that starts them with testcontainers-go
// (the conformance harness, mockwx/mockwxcontainer): a context in a
// directory of its own holding rootfs/usr/local/bin/NAME (a static Go
// binary: CGO_ENABLED=0, -trimpath, -tags timetzdata), rootfs/etc/ssl/certs/
// ca-certificates.crt (this host's bundle, empty when it has none) and
// deploy/NAME/Dockerfile, built through the Docker API with a deadline.
// Nothing is pulled, and the contexts compose builds from are never
// touched.
package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// ModulePath is this repository's module path.
const ModulePath = "github.com/wxpush/wxpush"

// Deadlines: the Go build (a cold build cache compiles every dependency)
// and each Docker call.
const (
	GoBuildTimeout = 10 * time.Minute
	DockerTimeout  = 90 * time.Second
)

// caBundle is the host's CA bundle copied into the images.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// Image is one image to build.
type Image struct {
	// Name is the directory under deploy/ holding the Dockerfile, and the
	// binary's name in /usr/local/bin.
	Name string
	// Package is the main package's import path, e.g.
	// github.com/wxpush/wxpush/mockwx/cmd/mockwx. It is built from the
	// current directory, so that a module requiring this one builds the
	// version it requires (from its module cache).
	Package string
	// Repo is the image's repository, e.g. wxpush-harness/mockwx.
	Repo string
	// Tag is the image's tag; empty: "src-" and the first 12 hex digits of
	// the SHA-256 of the binary and the Dockerfile, and an image already
	// carrying that tag is reused without a Docker build.
	Tag string
}

// ModuleRoot is the directory holding this repository's source as the
// current directory's module sees it: the repository root inside it, the
// module cache's copy in a module that requires it.
func ModuleRoot(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", ModulePath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		return "", fmt.Errorf("the images are built from the source with the Go toolchain: run inside %s or a module that requires it (go list -m %s: %v %s)",
			ModulePath, ModulePath, err, strings.TrimSpace(stderr.String()))
	}
	return dir, nil
}

// Build lays out img's context in a temporary directory (removed after)
// and builds it with provider; it returns the image's tag (repo:tag).
func Build(ctx context.Context, provider *testcontainers.DockerProvider, img Image) (string, error) {
	if img.Name == "" || img.Package == "" || img.Repo == "" {
		return "", errors.New("imagebuild: an image needs Name, Package and Repo")
	}
	root, err := ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "deploy", img.Name, "Dockerfile"))
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	dir, err := os.MkdirTemp("", "wxpush-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "rootfs", "usr", "local", "bin")
	certs := filepath.Join(dir, "rootfs", "etc", "ssl", "certs")
	for _, d := range []string{bin, certs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	binary := filepath.Join(bin, img.Name)
	bctx, cancel := context.WithTimeout(ctx, GoBuildTimeout)
	cmd := exec.CommandContext(bctx, "go", "build", "-trimpath", "-tags", "timetzdata", "-ldflags", "-s -w", "-o", binary, img.Package)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	cancel()
	if err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", img.Package, err, out)
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		ca = nil // no CA bundle here: the images only talk to each other
	}
	if err := os.WriteFile(filepath.Join(certs, "ca-certificates.crt"), ca, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
		return "", err
	}
	tag := img.Tag
	if tag == "" {
		if tag, err = contentTag(binary, dockerfile); err != nil {
			return "", err
		}
		ictx, cancel := context.WithTimeout(ctx, DockerTimeout)
		_, err := provider.Client().ImageInspect(ictx, img.Repo+":"+tag)
		cancel()
		if err == nil {
			return img.Repo + ":" + tag, nil
		}
	}
	bctx, cancel = context.WithTimeout(ctx, DockerTimeout)
	defer cancel()
	ref, err := provider.BuildImage(bctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context: dir, Repo: img.Repo, Tag: tag, KeepImage: true, BuildLogWriter: io.Discard,
	}})
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	return ref, nil
}

// contentTag is "src-" and the first 12 hex digits of the SHA-256 of the
// binary and the Dockerfile (the CA bundle aside: a host's bundle changes
// rarely and the images rely on it little).
func contentTag(binary string, dockerfile []byte) (string, error) {
	f, err := os.Open(binary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	h.Write(dockerfile)
	return "src-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}
