package logging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// go-redis's logging interface, which redis.SetLogger takes.
var _ interface {
	Printf(ctx context.Context, format string, v ...any)
} = (*RedisLogger)(nil)

// Compile-time: redis.SetLogger accepts the bridge.
var _ = func() { redis.SetLogger(NewRedisLogger(slog.New(slog.DiscardHandler), 0, 0)) }

// lines decodes buf's JSON lines; a line that is not a JSON object fails t.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "not a JSON line: %s", sc.Text())
		out = append(out, m)
	}
	return out
}

// TestDurationsReadable: a time.Duration in a log line, at the top level,
// in a group or from With, is its String(), not nanoseconds.
func TestDurationsReadable(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		path []string
		want string
	}{
		{"attr", func(l *slog.Logger) { l.Info("m", "took", 1500*time.Millisecond) }, []string{"took"}, "1.5s"},
		{"small", func(l *slog.Logger) { l.Info("m", "took", 250*time.Microsecond) }, []string{"took"}, "250µs"},
		{"zero", func(l *slog.Logger) { l.Info("m", "took", time.Duration(0)) }, []string{"took"}, "0s"},
		{"group", func(l *slog.Logger) { l.Info("m", slog.Group("retry", "backoff", 2*time.Minute)) }, []string{"retry", "backoff"}, "2m0s"},
		{"with", func(l *slog.Logger) { l.With("timeout", 3*time.Second).Info("m") }, []string{"timeout"}, "3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(New(&buf, slog.LevelInfo))
			got := lines(t, &buf)
			require.Len(t, got, 1)
			var v any = got[0]
			for _, k := range tt.path {
				v = v.(map[string]any)[k]
			}
			assert.Equal(t, tt.want, v, "%s", buf.String())
		})
	}
	// Other kinds are left alone.
	var buf bytes.Buffer
	New(&buf, slog.LevelInfo).Info("m", "n", 3, "s", "x")
	assert.Equal(t, float64(3), lines(t, &buf)[0]["n"])
}

func TestParseLevel(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want slog.Level
		ok   bool
	}{{"debug", slog.LevelDebug, true}, {"INFO", slog.LevelInfo, true}, {"warn", slog.LevelWarn, true}, {"error", slog.LevelError, true}, {"loud", 0, false}, {"", 0, false}} {
		got, err := ParseLevel(tt.in)
		if !tt.ok {
			require.Error(t, err, tt.in)
			assert.Contains(t, err.Error(), "want debug, info, warn or error")
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	// Levels below the handler's are dropped.
	var buf bytes.Buffer
	New(&buf, slog.LevelWarn).Info("dropped")
	assert.Empty(t, buf.String())
}

// TestRedisLogger: go-redis lines become JSON WARN lines, at most the
// limit per interval; the rest are counted and the count logged with the
// next interval's first line or by Flush.
func TestRedisLogger(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := NewRedisLogger(New(&buf, slog.LevelInfo), 3, time.Minute)
	l.now = func() time.Time { return now }
	dial := "redis: connection pool: failed to dial after %d attempts: %s"
	for i := range 10 {
		l.Printf(t.Context(), dial, 5, "dial tcp 127.0.0.1:1: connect: connection refused")
		now = now.Add(time.Second * time.Duration(i%2)) // 5 s for 10 lines: one interval
	}
	got := lines(t, &buf)
	require.Len(t, got, 3, "the limit: %s", buf.String())
	for _, m := range got {
		assert.Equal(t, "WARN", m["level"])
		assert.Equal(t, RedisMsg, m["msg"])
		assert.Equal(t, "connection pool: failed to dial after 5 attempts: dial tcp 127.0.0.1:1: connect: connection refused", m["text"])
	}

	// The next interval: first the count of the 7 left out, then the line.
	buf.Reset()
	now = now.Add(time.Minute)
	l.Printf(t.Context(), "redis: %s\n", "again")
	got = lines(t, &buf)
	require.Len(t, got, 2, buf.String())
	assert.Equal(t, RedisSuppressedMsg, got[0]["msg"])
	assert.Equal(t, float64(7), got[0]["suppressed"])
	assert.Equal(t, "1m0s", got[0]["interval"])
	assert.Equal(t, "again", got[1]["text"])

	// Flush logs a pending count once; nothing pending, nothing logged.
	buf.Reset()
	for range 5 {
		l.Printf(t.Context(), "x")
	}
	l.Flush()
	l.Flush()
	got = lines(t, &buf)
	require.Len(t, got, 3, buf.String())
	assert.Equal(t, RedisSuppressedMsg, got[2]["msg"])
	assert.Equal(t, float64(3), got[2]["suppressed"])
}

func TestNewRedisLoggerDefaults(t *testing.T) {
	l := NewRedisLogger(slog.New(slog.DiscardHandler), 0, -1)
	assert.Equal(t, DefaultRedisLogLimit, l.limit)
	assert.Equal(t, DefaultRedisLogInterval, l.per)
}
