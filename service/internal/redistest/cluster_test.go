package redistest_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestNewCluster: masters only, every node a master; with replicas, every
// node listed, one replica per master, the client writes and reads, and
// the URL names every node.
func TestNewCluster(t *testing.T) {
	t.Run("masters", func(t *testing.T) {
		c := redistest.NewCluster(t, 3)
		assert.Len(t, c.Addrs, 3)
		assert.ElementsMatch(t, c.Addrs, c.Nodes.Masters())
	})
	t.Run("replicas", func(t *testing.T) {
		c := redistest.NewClusterWithReplicas(t, 3, 1)
		require.Len(t, c.Addrs, 6)
		assert.Len(t, c.Nodes.Masters(), 3)
		assert.Equal(t, 5, strings.Count(c.URL(), "addr="), c.URL())
		ctx := t.Context()
		for _, k := range []string{"a", "b", "c", "d"} {
			require.NoError(t, c.Client.Set(ctx, k, "v-"+k, 0).Err())
		}
		for _, k := range []string{"a", "b", "c", "d"} {
			got, err := c.Client.Get(ctx, k).Result()
			require.NoError(t, err)
			assert.Equal(t, "v-"+k, got)
		}
	})
}
