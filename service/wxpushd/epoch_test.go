package wxpushd

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// storeResetLine matches the one ERROR line of a store reset.
var storeResetLine = regexp.MustCompile(`"level":"ERROR","msg":"STORE RESET`)

func storeResets(in *instance) int {
	return len(storeResetLine.FindAllStringIndex(in.logs.String(), -1))
}

// metricValue reads one sample of the instance's /metrics.
func metricValue(t *testing.T, a api, sample string) string {
	t.Helper()
	code, body, _ := a.do(http.MethodGet, "/metrics", nil, nil)
	require.Equal(t, http.StatusOK, code)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// wipePrefix deletes every key of the test's prefix in one DEL: the store
// comes back empty, as after FLUSHALL, without flushing a shared Redis.
func wipePrefix(t *testing.T, r *redistest.Redis) {
	t.Helper()
	ctx := t.Context()
	var all []string
	var cursor uint64
	for {
		keys, next, err := r.Client.Scan(ctx, cursor, r.Prefix+"*", 1000).Result()
		require.NoError(t, err)
		all = append(all, keys...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	require.NotEmpty(t, all)
	require.NoError(t, r.Client.Del(ctx, all...).Err())
}

// TestStoreResetAlarm: two instances share a store that loses its data
// while their connections stay up (FLUSHALL, a failover to an empty
// replica). Each instance notices it by its periodic check: one ERROR line
// each, wxpush_store_resets_total 1 each, /readyz still 200 with the reset
// named in its body, and the epoch written again (by exactly one of them).
func TestStoreResetAlarm(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.StoreCheckInterval = 50 * time.Millisecond
	ins := []*instance{startInstance(t, cfg), startInstance(t, cfg)}
	for _, in := range ins {
		require.Eventually(t, func() bool { return strings.Contains(in.logs.String(), `"msg":"store epoch`) },
			10*time.Second, 10*time.Millisecond, "the instance checks the epoch at start")
	}
	before, err := r.Client.Get(t.Context(), r.Prefix+"epoch").Result()
	require.NoError(t, err)
	a0 := api{t: t, base: ins[0].URL(), key: testAPIKey}
	id := a0.send(order(openid(500)), "reset-key-1")
	a0.waitStatus(id, service.StatusSent, 10*time.Second)
	for _, in := range ins {
		a := api{t: t, base: in.URL(), key: testAPIKey}
		assert.Equal(t, "0", metricValue(t, a, "wxpush_store_resets_total"))
		_, body, _ := a.do(http.MethodGet, "/readyz", nil, nil)
		assert.NotContains(t, string(body), "store_reset")
	}

	wipePrefix(t, r)

	for i, in := range ins {
		a := api{t: t, base: in.URL(), key: testAPIKey}
		require.Eventually(t, func() bool { return metricValue(t, a, "wxpush_store_resets_total") == "1" },
			10*time.Second, 10*time.Millisecond, "instance %d counts the reset", i)
		code, body, _ := a.do(http.MethodGet, "/readyz", nil, nil)
		assert.Equal(t, http.StatusOK, code, "a reset is a warning, not unreadiness: %s", body)
		assert.Contains(t, string(body), `"status":"ready"`)
		assert.Contains(t, string(body), "store_reset: Redis lost its data")
	}
	after, err := r.Client.Get(t.Context(), r.Prefix+"epoch").Result()
	require.NoError(t, err, "the epoch is written again")
	assert.NotEqual(t, before, after)

	// The service carries on: the lost key is taken as new (what the alarm
	// is about), and delivered.
	again := a0.send(order(openid(500)), "reset-key-1")
	assert.NotEqual(t, id, again, "the idempotency key was lost with the store")
	a0.waitStatus(again, service.StatusSent, 10*time.Second)

	// One event: one line per instance, however many checks follow.
	assert.Never(t, func() bool { return storeResets(ins[0]) > 1 || storeResets(ins[1]) > 1 },
		20*cfg.StoreCheckInterval, cfg.StoreCheckInterval)
	vanished := 0
	for i, in := range ins {
		assert.Equal(t, 1, storeResets(in), "instance %d: one ERROR line for the event", i)
		if strings.Contains(in.logs.String(), "store epoch vanished") {
			vanished++
		}
		assert.Equal(t, "1", metricValue(t, api{t: t, base: in.URL(), key: testAPIKey}, "wxpush_store_resets_total"))
	}
	assert.Equal(t, 1, vanished, "one instance rewrote the epoch, the other saw it rewritten")
}

// TestStoreResetOnReconnect: Redis restarts without its data. The
// periodic check is an hour away, so the instance notices the reset when
// it reconnects.
func TestStoreResetOnReconnect(t *testing.T) {
	for kind, newServer := range redistest.Servers(t) {
		t.Run(kind, func(t *testing.T) {
			mock := mockwxtest.NewServer(t, mockwxtest.Options{})
			srv := newServer(t)
			cfg := testConfig(mock, &redistest.Redis{Prefix: "reconnect:{wxp}:", URL: srv.URL()})
			cfg.StoreCheckInterval = time.Hour
			in := startInstance(t, cfg)
			a := api{t: t, base: in.URL(), key: testAPIKey}
			require.Eventually(t, func() bool { return strings.Contains(in.logs.String(), `"msg":"store epoch`) },
				10*time.Second, 10*time.Millisecond)

			srv.Stop()
			srv.StartEmpty(t)
			require.Eventually(t, func() bool { return metricValue(t, a, "wxpush_store_resets_total") == "1" },
				15*time.Second, 20*time.Millisecond, "the reset is noticed on reconnect")
			_, body, _ := a.do(http.MethodGet, "/readyz", nil, nil)
			assert.Contains(t, string(body), "store_reset")
			assert.Equal(t, 1, storeResets(in))
		})
	}
}

// TestRedisPersistenceCheck: at start, wxpushd reads Redis's persistence
// settings and warns loudly when a restart would lose the store.
func TestRedisPersistenceCheck(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string // a log line that must be there
		notWant string // one that must not
	}{
		{"persistence off", []string{"--save", "", "--appendonly", "no"}, `"level":"WARN","msg":"REDIS PERSISTENCE IS OFF`, "append-only file on"},
		{"snapshots only", []string{"--save", "3600 1", "--appendonly", "no"}, `"level":"WARN","msg":"REDIS PERSISTS BY SNAPSHOTS ONLY`, "PERSISTENCE IS OFF"},
		{"append-only file", []string{"--appendonly", "yes", "--appendfsync", "everysec"}, `"level":"INFO","msg":"redis persistence: append-only file on","instance":"persist","appendonly":"yes","appendfsync":"everysec"`, `"level":"WARN","msg":"REDIS PERSIST`},
		{"evicting when full", []string{"--appendonly", "yes", "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"}, `"level":"WARN","msg":"REDIS EVICTS KEYS WHEN FULL (maxmemory-policy allkeys-lru)`, "PERSISTENCE IS OFF"},
		{"noeviction", []string{"--appendonly", "yes", "--maxmemory", "100mb", "--maxmemory-policy", "noeviction"}, "append-only file on", "REDIS EVICTS"},
		{"CONFIG disabled", []string{"--rename-command", "CONFIG", ""}, `"level":"INFO","msg":"redis persistence settings not checked: CONFIG GET refused`, `"level":"WARN","msg":"REDIS PERSIST`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.NewProcess(t, tt.args...)
			mock := mockwxtest.NewServer(t, mockwxtest.Options{})
			cfg := testConfig(mock, &redistest.Redis{Prefix: "persist:{wxp}:", URL: srv.URL()})
			cfg.Instance = "persist"
			logs := &syncbuf.Buffer{}
			s, err := New(t.Context(), cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			require.NoError(t, err)
			s.Close()
			assert.Contains(t, logs.String(), tt.want)
			assert.NotContains(t, logs.String(), tt.notWant)
		})
	}
}

// TestPersistenceCheckDoesNotBlockStart: a Redis that does not answer
// CONFIG (miniredis knows only some of it) is reported at INFO, and the
// instance starts.
func TestPersistenceCheckDoesNotBlockStart(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	if r.Real() {
		t.Skip("needs miniredis")
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, testConfig(mock, r), Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	require.NoError(t, err)
	s.Close()
	assert.Contains(t, logs.String(), "redis persistence settings not checked")
}
