package wxpushd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestFailoverUnderLoad kills a master of a Redis Cluster (3 masters, a
// replica each; 6 partitions) with SIGKILL while two instances accept
// messages: the replica takes over, the instances go on without a
// restart, and no message is sent twice. With --redis-wait-replicas 1
// nothing answered 202 is lost; without it Redis's asynchronous
// replication may lose the last acknowledged writes, which the test
// counts.
func TestFailoverUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster twice and kills a master in each")
	}
	for _, wait := range []int{1, 0} {
		t.Run(fmt.Sprintf("wait-replicas=%d", wait), func(t *testing.T) {
			lost := failover(t, wait)
			if wait > 0 {
				assert.Zero(t, lost, "with WAIT nothing acknowledged is lost")
			}
		})
	}
}

// failover runs one failover under load and returns how many messages
// answered 202 were lost.
func failover(t *testing.T, waitReplicas int) int {
	cl := redistest.NewClusterWithReplicas(t, 3, 1)
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, &redistest.Redis{URL: cl.URL(), Prefix: "wxp:{wxp}:"})
	cfg.Partitions, cfg.RedisWaitReplicas, cfg.LogLevel = 6, waitReplicas, "error"
	urls := []string{startInstance(t, cfg).URL(), startInstance(t, cfg).URL()}

	body, err := json.Marshal(order(openid(1)))
	require.NoError(t, err)
	var (
		mu       sync.Mutex
		accepted = map[string]string{} // id -> idempotency key
		answers  = map[int]int{}
		after    atomic.Int64 // 202s after the failover
		failed   atomic.Bool
		stop     atomic.Bool
	)
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("failover-%d-%d", w, i)
				req, _ := http.NewRequest(http.MethodPost, urls[(w+i)%2]+"/v1/messages", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testAPIKey)
				req.Header.Set(service.HeaderIdempotencyKey, key)
				resp, err := client.Do(req)
				code := 0
				var acc service.Accepted
				if err == nil {
					code = resp.StatusCode
					_ = json.NewDecoder(resp.Body).Decode(&acc)
					resp.Body.Close()
				}
				mu.Lock()
				answers[code]++
				if code == http.StatusAccepted {
					accepted[acc.ID] = key
					if failed.Load() {
						after.Add(1)
					}
				}
				mu.Unlock()
				if code != http.StatusAccepted {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	before := len(accepted)
	mu.Unlock()
	dead, err := cl.Nodes.KillMaster(0)
	require.NoError(t, err)
	killed := time.Now()
	require.NoError(t, cl.Nodes.WaitFailover(t.Context(), dead))
	promoted := time.Since(killed)
	failed.Store(true)
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	require.Positive(t, after.Load(), "the instances accept again after the failover, without a restart")

	// Every acknowledged message must be sent, once.
	a := api{t: t, base: urls[0], key: testAPIKey}
	lost := 0
	deadline := time.Now().Add(30 * time.Second)
	for id := range accepted {
		for {
			code, b, _ := a.do(http.MethodGet, "/v1/messages/"+id, nil, nil)
			var m service.Message
			if code == http.StatusOK && json.Unmarshal(b, &m) == nil && m.Status == service.StatusSent {
				break
			}
			if time.Now().After(deadline) || code == http.StatusNotFound {
				lost++
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	delivered, _ := deliveries(t, mock)
	dup := 0
	for id := range accepted {
		if delivered[id] > 1 {
			dup++
		}
	}
	assert.Zero(t, dup, "no message reached the user twice")
	t.Logf("wait-replicas=%d: %d accepted in the 2 s before the kill (8 clients); master %s killed, replica promoted after %s; answers %v (0: transport error); %d acknowledged (%d after the failover), %d lost, %d sent twice",
		waitReplicas, before, dead, promoted.Round(time.Millisecond), answers, len(accepted), after.Load(), lost, dup)
	return lost
}
