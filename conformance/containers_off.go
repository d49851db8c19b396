//go:build !containers

package conformance

import "testing"

// newContainers stands in for the container backend in builds without the
// containers tag, so make test never compiles testcontainers-go.
func newContainers(t testing.TB, _ Options) Env {
	t.Helper()
	t.Skipf("%s=containers needs the containers build tag: go test -tags containers ./conformance/ (make conformance)", EnvBackend)
	return nil
}
