package wxpushd

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// redisClock is the clock the workers run on: this host's clock corrected
// by its offset from Redis's (TIME), measured at start and at every store
// check. The instances of a deployment disagree by their hosts' skew, and
// the workers compare times that other instances wrote: when an attempt
// whose answer was lost began (WeChat's dedup window), when a retry is
// due. Redis's clock is the one they share, so on it they agree within a
// round trip, whatever their hosts' clocks say.
type redisClock struct {
	local  func() time.Time // this host's clock
	rdb    redis.UniversalClient
	log    *slog.Logger
	gauge  prometheus.Gauge
	offset atomic.Int64 // Redis's clock minus this host's, ns
	logged atomic.Int64 // the offset last logged, ns
}

// clockOffsetLog is the offset from Redis's clock that is worth a WARN
// line (and a new one when it moves by as much again).
const clockOffsetLog = time.Second

// Now is this host's clock corrected to Redis's.
func (c *redisClock) Now() time.Time { return c.local().Add(time.Duration(c.offset.Load())) }

// sync measures the offset: Redis's TIME against the middle of the round
// trip. An answer slower than a second says little and is ignored.
func (c *redisClock) sync(ctx context.Context) error {
	t1 := c.local()
	rt, err := c.rdb.Time(ctx).Result()
	t2 := c.local()
	if err != nil {
		return err
	}
	rtt := t2.Sub(t1)
	if rtt > time.Second || rtt < 0 {
		return nil
	}
	off := rt.Sub(t1.Add(rtt / 2))
	c.offset.Store(int64(off))
	c.gauge.Set(off.Seconds())
	if d := off - time.Duration(c.logged.Load()); d >= clockOffsetLog || d <= -clockOffsetLog {
		c.logged.Store(int64(off))
		c.log.Warn("this host's clock differs from Redis's; the workers run on Redis's clock (run NTP on every host)", "offset", off.Round(time.Millisecond))
	}
	return nil
}
