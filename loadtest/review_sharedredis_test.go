package loadtest

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// TestGivenRedisKeepsToItsOwnKeys: with --redis URL the stack's instances
// share a Redis the stack does not own (possibly a real deployment's,
// whose wxpushd uses the default key prefix). The harness's contract
// (Spec.Redis) is a private key prefix, deleted at Close: the stack must
// neither use the default prefix (it would join that deployment's queue
// and send its messages to the mock) nor leave its messages behind.
func TestGivenRedisKeepsToItsOwnKeys(t *testing.T) {
	mr := miniredis.RunT(t)
	sc, err := scenarios.Get("smoke")
	require.NoError(t, err)
	sc = sc.WithDefaults()
	s, err := startEmbedded(t.Context(), sc, redisChoice{url: "redis://" + mr.Addr() + "/0"}, t.TempDir(), 1000, nil)
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	app := s.MockApps()[scenarios.DefaultAppName]
	require.NotEmpty(t, app.Templates)
	data, err := sampleData(app.Templates[0])
	require.NoError(t, err)
	c, err := client.New(s.ServiceURLs()[0], client.WithAPIKey(s.APIKey()))
	require.NoError(t, err)
	acc, _, err := c.Send(t.Context(), service.SendRequest{ToUser: upRecipients[0], TemplateID: app.Templates[0].ID, Data: data}, "")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		m, err := c.Get(t.Context(), acc.ID)
		return err == nil && (m.Status == service.StatusSent || m.Status == service.StatusDelivered)
	}, 20*time.Second, 50*time.Millisecond)

	for _, k := range mr.Keys() {
		assert.NotRegexp(t, `^wxp:`, k, "the stack writes under wxpushd's default prefix in a Redis it does not own")
		break
	}
	s.Close()
	closed = true
	assert.Empty(t, mr.Keys(), "the stack left its keys in a Redis it does not own")
}
