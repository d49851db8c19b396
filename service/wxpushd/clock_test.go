package wxpushd

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestRedisClock: an instance whose host clock runs 3 minutes behind (or
// ahead) runs its workers on Redis's clock, so the times it compares with
// those other instances wrote (WeChat's dedup window) are on one clock.
func TestRedisClock(t *testing.T) {
	for _, skew := range []time.Duration{-3 * time.Minute, 3 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			r := redistest.New(t)
			logs := &syncbuf.Buffer{}
			gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
			c := &redisClock{local: func() time.Time { return time.Now().Add(skew) }, rdb: r.Client,
				log: slog.New(slog.NewJSONHandler(logs, nil)), gauge: gauge}
			assert.InDelta(t, skew.Seconds(), time.Until(c.Now()).Seconds(), 1, "before the first measure: the host's clock")
			require.NoError(t, c.sync(t.Context()))
			// Redis's clock is this machine's (miniredis, or a local server).
			assert.InDelta(t, 0, time.Until(c.Now()).Seconds(), 1, "after it: Redis's clock")
			var m dto.Metric
			require.NoError(t, gauge.Write(&m))
			assert.InDelta(t, -skew.Seconds(), m.GetGauge().GetValue(), 1)
			assert.Contains(t, logs.String(), "this host's clock differs from Redis's")
			// Measured again with no change: no new line.
			n := len(logs.String())
			require.NoError(t, c.sync(t.Context()))
			assert.Len(t, logs.String(), n)
		})
	}
}

// TestWorkersRunOnRedisClock: a running instance whose host clock is 3
// minutes behind records its attempts on Redis's clock.
func TestWorkersRunOnRedisClock(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	in := startInstanceWith(t, cfg, Options{Clock: func() time.Time { return time.Now().Add(-3 * time.Minute) }})
	a := api{t: t, base: in.URL(), key: testAPIKey}
	id := a.send(order(openid(1)), "")
	m := a.waitStatus(id, service.StatusSent, 30*time.Second)
	require.NotNil(t, m.SentAt)
	assert.InDelta(t, 0, time.Since(*m.SentAt).Seconds(), 30, "sent_at is on Redis's clock, not 3 minutes behind")
}

func testClock(r redis.UniversalClient, key, instance string, skew time.Duration) *redisClock {
	return &redisClock{local: func() time.Time { return time.Now().Add(skew) }, rdb: r, key: key, instance: instance,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})}
}

// TestConsensusClock: the callback skew check's clock is the median of the
// instances' host clocks, the same for every instance: a host 3 minutes
// behind among two right ones is outvoted (and agrees with them), and
// hosts that all run 10 minutes ahead of Redis's clock keep their time
// (the world's, which WeChat's timestamps are on) instead of Redis's.
func TestConsensusClock(t *testing.T) {
	sec := func(d time.Duration) float64 { return d.Seconds() }
	tests := []struct {
		name  string
		skews []time.Duration // of the hosts, from this machine's clock (Redis's)
		want  time.Duration   // the consensus, from this machine's clock
	}{
		{"one host behind among three", []time.Duration{0, 0, -3 * time.Minute}, 0},
		{"every host ahead of Redis", []time.Duration{10 * time.Minute, 10 * time.Minute, 10 * time.Minute}, 10 * time.Minute},
		{"one instance", []time.Duration{-7 * time.Minute}, -7 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := redistest.New(t)
			var clocks []*redisClock
			for i, skew := range tt.skews {
				clocks = append(clocks, testClock(r.Client, r.Prefix+"clocks", "i"+strconv.Itoa(i), skew))
			}
			for range 2 { // the first round publishes, the second sees everyone
				for _, c := range clocks {
					require.NoError(t, c.sync(t.Context()))
				}
			}
			for i, c := range clocks {
				assert.InDelta(t, sec(tt.want), sec(time.Until(c.Consensus())), 1, "instance %d's consensus", i)
				assert.InDelta(t, 0, sec(time.Until(c.Now())), 1, "instance %d's workers stay on Redis's clock", i)
			}
		})
	}
	t.Run("a gone instance drops out", func(t *testing.T) {
		r := redistest.New(t)
		key := r.Prefix + "clocks"
		// An instance 9 minutes behind that last measured an hour ago.
		old := strconv.FormatInt(int64(9*time.Minute), 10) + " " + strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10)
		require.NoError(t, r.Client.HSet(t.Context(), key, "gone", old).Err())
		c := testClock(r.Client, key, "here", 0)
		require.NoError(t, c.sync(t.Context()))
		assert.InDelta(t, 0, sec(time.Until(c.Consensus())), 1)
		assert.False(t, r.Client.HExists(t.Context(), key, "gone").Val(), "its entry is removed")
	})
}

// TestCallbacksOnTheWorldsClock: with Redis's clock 10 minutes behind the
// instance's host (which runs NTP, as WeChat's servers do), WeChat's URL
// verification, stamped with the world's time, is accepted: the skew check
// does not run on Redis's clock.
func TestCallbacksOnTheWorldsClock(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	const cbToken = "world-clock-callback-token"
	cfg.Apps[0].CallbackToken = cbToken
	cfg.NoWorkers = true
	ahead := 10 * time.Minute
	in := startInstanceWith(t, cfg, Options{Clock: func() time.Time { return time.Now().Add(ahead) }})
	ts := strconv.FormatInt(time.Now().Add(ahead).Unix(), 10)
	q := url.Values{"signature": {wechat.Signature(cbToken, ts, "77")}, "timestamp": {ts}, "nonce": {"77"}, "echostr": {"hi"}}
	resp, err := http.Get(in.URL() + "/wechat/callback/default?" + q.Encode())
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, "hi", string(body))
}

// TestClockOnClusterAsksOneMaster: on a Redis Cluster, whose masters each
// have a clock of their own, every measure asks the same master, the one
// that holds the offsets' key, so the offset does not jump between clocks.
func TestClockOnClusterAsksOneMaster(t *testing.T) {
	cl := redistest.NewCluster(t, 3)
	var mu sync.Mutex
	asked := map[string]int{}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs})
	t.Cleanup(func() { _ = client.Close() })
	client.OnNewNode(func(node *redis.Client) {
		addr := node.Options().Addr
		node.AddHook(timeHook{func() { mu.Lock(); asked[addr]++; mu.Unlock() }})
	})
	const key = "wxp:{wxp}:clocks"
	c := testClock(client, key, "i0", 0)
	for range 30 {
		require.NoError(t, c.sync(t.Context()))
	}
	master, err := client.MasterForKey(t.Context(), key)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{master.Options().Addr: 30}, asked, "TIME asked of the key's master only")
	assert.InDelta(t, 0, time.Until(c.Consensus()).Seconds(), 1)
}

// timeHook calls seen for each TIME command.
type timeHook struct{ seen func() }

func (h timeHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h timeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "time" {
			h.seen()
		}
		return next(ctx, cmd)
	}
}
func (h timeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
