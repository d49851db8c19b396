//go:build containers

package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wxpush/wxpush/internal/harness"
	"github.com/wxpush/wxpush/internal/harness/containers"
)

// newContainers starts the deployment in containers (package
// harness/containers); it skips the test when Docker does not answer.
func newContainers(t testing.TB, opts Options) Env {
	t.Helper()
	spec, app := deploymentSpec(opts)
	spec.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	d, err := containers.Start(ctx, spec)
	if errors.Is(err, harness.ErrNoDocker) {
		t.Skipf("containers backend: %v", err)
	}
	if err != nil {
		t.Fatalf("containers backend: %v", err)
	}
	return adopt(t, d, *app)
}
