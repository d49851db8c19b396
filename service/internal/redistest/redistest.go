// Package redistest gives tests a Redis: the real server named by REDIS_URL
// when it is set (CI sets it), else an in-process miniredis. Each test gets
// its own key prefix, so tests never see each other's keys and need no
// FLUSHDB.
package redistest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Redis is a test's Redis.
type Redis struct {
	Client redis.UniversalClient
	// Mini is the miniredis server, or nil against a real server.
	Mini *miniredis.Miniredis
	// Prefix is a key prefix unique to the test, with a hash tag.
	Prefix string
	// URL is a redis:// URL for the same server.
	URL string
}

// New returns a Redis for t, closed by t.Cleanup.
func New(t testing.TB) *Redis {
	t.Helper()
	prefix := "test:" + strings.NewReplacer("/", ":", " ", "_").Replace(t.Name()) + ":{wxp}:"
	if url := os.Getenv("REDIS_URL"); url != "" {
		o, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("redistest: REDIS_URL: %v", err)
		}
		c := redis.NewClient(o)
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Fatalf("redistest: REDIS_URL does not answer: %v", err)
		}
		t.Cleanup(func() {
			// Remove the test's keys so a shared server does not grow.
			ctx := context.Background() // the test's context is done by now
			// A benchmark leaves hundreds of thousands: unlink them a
			// page at a time, not one round trip each.
			// The pattern stops before the hash tag: a partitioned
			// store's keys carry tags of their own.
			pattern := prefix[:strings.IndexByte(prefix, '{')] + "*"
			var cursor uint64
			for {
				keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
				if err != nil {
					break
				}
				if len(keys) > 0 {
					c.Unlink(ctx, keys...)
				}
				if cursor = next; cursor == 0 {
					break
				}
			}
			_ = c.Close()
		})
		return &Redis{Client: c, Prefix: prefix, URL: url}
	}
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return &Redis{Client: c, Mini: m, Prefix: prefix, URL: "redis://" + m.Addr() + "/0"}
}

// Real reports whether the tests run against a real Redis.
func (r *Redis) Real() bool { return r.Mini == nil }
