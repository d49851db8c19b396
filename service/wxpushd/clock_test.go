package wxpushd

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
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
