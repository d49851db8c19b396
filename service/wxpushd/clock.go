package wxpushd

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
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
// round trip, whatever their hosts' clocks say. On a Redis Cluster every
// master has a clock of its own: TIME is always asked of the master that
// holds key, so that every instance reads the same one.
//
// Redis's clock need not be the world's, though, and WeChat's callback
// timestamps are the world's. Consensus is the clock the callback skew
// check runs on: the median of the deployment's host clocks, read through
// Redis. Every instance publishes its offset in the hash at key; the median
// of the live ones is the same for all of them, so they agree on it as they
// do on Redis's clock (the replay guard's memory stays long enough for
// every instance), yet it is the world's time as long as most hosts run
// NTP, even when Redis's host does not. With one instance it is that
// host's clock.
type redisClock struct {
	local    func() time.Time // this host's clock
	rdb      redis.UniversalClient
	key      string // the hash of the instances' offsets; on a cluster, TIME is asked of its master
	instance string // this instance's field in it
	log      *slog.Logger
	gauge    prometheus.Gauge
	offset   atomic.Int64 // Redis's clock minus this host's, ns
	median   atomic.Int64 // the median of the live instances' offsets, ns
	logged   atomic.Int64 // the offset last logged, ns
}

// clockOffsetLog is the offset from Redis's clock that is worth a WARN
// line (and a new one when it moves by as much again).
const clockOffsetLog = time.Second

// clockLive is how long an instance's published offset counts after it was
// measured: an instance that stopped measuring (gone) drops out of the
// median.
const clockLive = 5 * time.Minute

// Now is this host's clock corrected to Redis's.
func (c *redisClock) Now() time.Time { return c.local().Add(time.Duration(c.offset.Load())) }

// Consensus is Redis's clock corrected by the median of the instances'
// offsets: the median of their host clocks.
func (c *redisClock) Consensus() time.Time {
	return c.local().Add(time.Duration(c.offset.Load() - c.median.Load()))
}

// sync measures the offset: Redis's TIME against the middle of the round
// trip. An answer slower than a second says little and is ignored. Then it
// publishes the offset and takes the median of the live ones.
func (c *redisClock) sync(ctx context.Context) error {
	var node redis.Cmdable = c.rdb
	if cc, ok := c.rdb.(*redis.ClusterClient); ok && c.key != "" {
		m, err := cc.MasterForKey(ctx, c.key)
		if err != nil {
			return err
		}
		node = m
	}
	t1 := c.local()
	rt, err := node.Time(ctx).Result()
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
	if c.key == "" {
		c.median.Store(int64(off))
		return nil
	}
	return c.publish(ctx, off, rt)
}

// publish records this instance's offset at Redis time rt and takes the
// median of the offsets measured within clockLive, dropping older ones.
func (c *redisClock) publish(ctx context.Context, off time.Duration, rt time.Time) error {
	var all *redis.MapStringStringCmd
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, c.key, c.instance, strconv.FormatInt(int64(off), 10)+" "+strconv.FormatInt(rt.UnixMilli(), 10))
		all = p.HGetAll(ctx, c.key)
		p.PExpire(ctx, c.key, 2*clockLive)
		return nil
	})
	if err != nil {
		c.median.Store(int64(off))
		return err
	}
	offs := []int64{int64(off)}
	var stale []string
	for inst, v := range all.Val() {
		if inst == c.instance {
			continue
		}
		o, at, ok := parseOffset(v)
		if !ok || rt.Sub(time.UnixMilli(at)) > clockLive {
			stale = append(stale, inst)
			continue
		}
		offs = append(offs, o)
	}
	if len(stale) > 0 {
		c.rdb.HDel(ctx, c.key, stale...)
	}
	slices.Sort(offs)
	m := offs[len(offs)/2]
	if len(offs)%2 == 0 {
		m = offs[len(offs)/2-1]/2 + m/2
	}
	c.median.Store(m)
	return nil
}

// parseOffset reads "<offset ns> <measured at, Unix ms>".
func parseOffset(v string) (off, at int64, ok bool) {
	a, b, found := strings.Cut(v, " ")
	if !found {
		return 0, 0, false
	}
	off, err1 := strconv.ParseInt(a, 10, 64)
	at, err2 := strconv.ParseInt(b, 10, 64)
	return off, at, err1 == nil && err2 == nil
}
