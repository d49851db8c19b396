package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Defaults of the go-redis bridge: a Redis that does not answer makes
// go-redis log a line for every failed dial, several a second per client.
const (
	DefaultRedisLogLimit    = 5           // go-redis lines logged per interval
	DefaultRedisLogInterval = time.Minute // the interval
)

// RedisMsg is the message of the log lines that carry go-redis's own
// lines (their text is in the "text" attribute), and RedisSuppressedMsg
// that of the line counting the ones left out.
const (
	RedisMsg           = "go-redis"
	RedisSuppressedMsg = "go-redis log lines suppressed"
)

// RedisLogger carries go-redis's log lines to a slog.Logger at WARN, at
// most limit of them in each interval: the lines past the limit are
// counted, and the count is logged (RedisSuppressedMsg, "suppressed" and
// "interval") with the first line of a later interval or by Flush.
// Install it with redis.SetLogger; it is safe for concurrent use.
type RedisLogger struct {
	log   *slog.Logger
	limit int
	per   time.Duration
	now   func() time.Time

	mu         sync.Mutex
	start      time.Time // the current interval's start; zero before the first line
	logged     int       // lines logged in the current interval
	suppressed int       // lines left out since the last count was logged
}

// NewRedisLogger returns a bridge to log that logs at most limit go-redis
// lines per interval (limit <= 0 or per <= 0: the defaults).
func NewRedisLogger(log *slog.Logger, limit int, per time.Duration) *RedisLogger {
	if limit <= 0 {
		limit = DefaultRedisLogLimit
	}
	if per <= 0 {
		per = DefaultRedisLogInterval
	}
	return &RedisLogger{log: log, limit: limit, per: per, now: time.Now}
}

// Printf is go-redis's logging interface (redis.SetLogger).
func (l *RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	text := strings.TrimSpace(fmt.Sprintf(format, v...))
	text = strings.TrimPrefix(text, "redis: ")
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.start.IsZero() || now.Sub(l.start) >= l.per {
		l.flushLocked(ctx)
		l.start, l.logged = now, 0
	}
	if l.logged >= l.limit {
		l.suppressed++
		return
	}
	l.logged++
	l.log.WarnContext(ctx, RedisMsg, "text", text)
}

// Flush logs the count of the lines left out since it was last logged, if
// any: call it before the program exits.
func (l *RedisLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked(context.Background())
}

func (l *RedisLogger) flushLocked(ctx context.Context) {
	if l.suppressed == 0 {
		return
	}
	l.log.WarnContext(ctx, RedisSuppressedMsg, "suppressed", l.suppressed, "interval", l.per, "limit", l.limit)
	l.suppressed = 0
}
