package wxpushd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestPartitionsOnClusterEndToEnd runs two instances with six partitions
// on a real Redis Cluster of three masters: every message is sent once,
// an idempotency key replays across instances, search and the overview
// see every partition, and a third instance with another partition count
// is refused at start.
func TestPartitionsOnClusterEndToEnd(t *testing.T) {
	cl := redistest.NewCluster(t, 3)
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, &redistest.Redis{URL: cl.URL(), Prefix: "wxp:{wxp}:"})
	cfg.Partitions = 6
	a := api{t: t, base: startInstance(t, cfg).URL(), key: testAPIKey}
	b := api{t: t, base: startInstance(t, cfg).URL(), key: testAPIKey}

	var ids []string
	for i := range 60 {
		key := ""
		if i%3 == 0 {
			key = fmt.Sprintf("order-%d", i)
		}
		via := a
		if i%2 == 1 {
			via = b
		}
		id := via.send(order(openid(i%5+1)), key)
		if key != "" {
			other := map[bool]api{true: b, false: a}[via == a]
			assert.Equal(t, id, other.send(order(openid(i%5+1)), key), "the key replays on the other instance")
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		a.waitStatus(id, service.StatusSent, 20*time.Second)
	}
	delivered, _ := deliveries(t, mock)
	for _, id := range ids {
		assert.Equal(t, 1, delivered[id], "message %s reached the user once", id)
	}
	assert.Len(t, delivered, len(ids), "no other message was sent")

	code, body, _ := b.do(http.MethodGet, "/v1/messages?limit=500", nil, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var page service.MessagePage
	require.NoError(t, json.Unmarshal(body, &page))
	assert.Len(t, page.Messages, len(ids), "the search reads every partition")

	other := cfg
	other.Partitions = 3
	_, err := New(t.Context(), other, Options{})
	require.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "holds a queue of 6 partitions")
	assert.Contains(t, err.Error(), "--partitions is 3")
}
