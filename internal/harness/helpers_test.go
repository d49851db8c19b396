package harness_test

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// miniAddr is the address of a miniredis for the test.
func miniAddr(t *testing.T) string {
	t.Helper()
	return miniredis.RunT(t).Addr()
}
