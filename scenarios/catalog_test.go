package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCatalog: every catalog scenario parses, is named after its file and
// sets expectations; the catalog holds the scenarios the docs promise.
func TestCatalog(t *testing.T) {
	all, err := Catalog()
	require.NoError(t, err)
	var names []string
	for _, sc := range all {
		names = append(names, sc.Name)
		assert.NotEmpty(t, sc.Expect, sc.Name)
		assert.Greater(t, sc.Load.TotalHits(), 0.0, sc.Name)
		got, err := Get(sc.Name)
		require.NoError(t, err)
		assert.Equal(t, sc, got)
	}
	for _, want := range []string{"smoke", "steady", "ramp-to-saturation", "token-expiry-storm", "system-busy",
		"quota-45009", "latency-spike", "duplicate-flood", "crash-recovery", "redis-restart", "callback-safe-mode", "multi-app", "rate-limited", "user-events"} {
		assert.Contains(t, names, want)
	}
	_, err = Get("nope")
	require.ErrorIs(t, err, ErrNotFound)
}
