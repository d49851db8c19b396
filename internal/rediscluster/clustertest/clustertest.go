// Package clustertest is what the tests that start a Redis Cluster share
// before they start it: the check that redis-server and redis-cli are
// installed (skip without them, fail under CI=true, where .ci/run installs
// them) and the nodes' port range. Only tests and test helpers import it.
package clustertest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/wxpush/wxpush/internal/rediscluster"
)

// Need skips t when redis-server or redis-cli is not installed, or fails
// it under CI=true, and returns the port range of the cluster's nodes from
// rediscluster.PortsVar (the zero range, any free port, when unset); a
// malformed range fails t.
func Need(t testing.TB) rediscluster.PortRange {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed under CI=true (.ci/run installs redis-server): %v", bin, err)
			}
			t.Skipf("%s is not installed (apt-get install redis-server)", bin)
		}
	}
	ports, err := rediscluster.ParsePortRange(os.Getenv(rediscluster.PortsVar))
	if err != nil {
		t.Fatalf("%s: %v", rediscluster.PortsVar, err)
	}
	return ports
}
