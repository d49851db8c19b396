package wxpushd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

const testAPIKey = "test-api-key-0123456789abcdef"

// instance is one in-process wxpushd under test.
type instance struct {
	*Server
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run has returned
	logs    *syncbuf.Buffer
}

// stop shuts the instance down gracefully and waits for Run to return.
func (in *instance) stop(t testing.TB) {
	t.Helper()
	in.cancel()
	select {
	case <-in.stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("wxpushd did not stop")
	}
	in.Close()
}

// testConfig is a fast config against the mock and the test's Redis.
func testConfig(mock *mockwxtest.Server, r *redistest.Redis) Config {
	return Config{
		Addr: "127.0.0.1:0", RedisURL: r.URL, KeyPrefix: r.Prefix, WeChatBaseURL: mock.URL,
		APIKeys: []wechat.Secret{testAPIKey},
		Apps:    []AppConfig{{Name: "default", AppID: mock.App.AppID, Secret: wechat.Secret(mock.App.Secret)}},
		Workers: 8, MaxAttempts: 4, BackoffBase: 20 * time.Millisecond, BackoffCap: 100 * time.Millisecond,
		SendTimeout: 2 * time.Second, Visibility: 3 * time.Second, ShutdownTimeout: 5 * time.Second,
		PaceDelay: 300 * time.Millisecond, QuotaDelay: 300 * time.Millisecond, AppDelay: 300 * time.Millisecond,
	}
}

func startInstance(t testing.TB, cfg Config) *instance {
	t.Helper()
	return startInstanceWith(t, cfg, Options{})
}

// startInstanceWith starts an instance with opts; its logs go to the
// instance's buffer.
func startInstanceWith(t testing.TB, cfg Config, opts Options) *instance {
	t.Helper()
	logs := &syncbuf.Buffer{}
	logLevel := slog.LevelDebug // tests see (and check) everything by default
	if cfg.LogLevel != "" {
		require.NoError(t, logLevel.UnmarshalText([]byte(cfg.LogLevel)))
	}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: logLevel}))
	s, err := New(t.Context(), cfg, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{Server: s, cancel: cancel, stopped: make(chan struct{}), logs: logs}
	go func() {
		defer close(in.stopped)
		if err := s.Run(ctx); err != nil && !errors.Is(err, ErrKilled) {
			t.Errorf("wxpushd Run: %v", err)
		}
	}()
	t.Cleanup(func() { in.stop(t) })
	return in
}

// api is a tiny client of the REST API.
type api struct {
	t    *testing.T
	base string
	key  string
}

func (a api) do(method, path string, body any, hdr map[string]string) (int, []byte, http.Header) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.base+path, rd)
	require.NoError(a.t, err)
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	return resp.StatusCode, b, resp.Header
}

// send queues a message and returns its id.
func (a api) send(req service.SendRequest, key string) string {
	a.t.Helper()
	hdr := map[string]string{}
	if key != "" {
		hdr[service.HeaderIdempotencyKey] = key
	}
	code, body, _ := a.do(http.MethodPost, "/v1/messages", req, hdr)
	require.Equal(a.t, http.StatusAccepted, code, "POST /v1/messages: %s", body)
	var acc service.Accepted
	require.NoError(a.t, json.Unmarshal(body, &acc))
	return acc.ID
}

func (a api) get(id string) service.Message {
	a.t.Helper()
	code, body, _ := a.do(http.MethodGet, "/v1/messages/"+id, nil, nil)
	require.Equal(a.t, http.StatusOK, code, "GET /v1/messages/%s: %s", id, body)
	var m service.Message
	require.NoError(a.t, json.Unmarshal(body, &m))
	return m
}

// waitStatus polls until the message reaches a terminal status (or want).
func (a api) waitStatus(id string, want service.Status, within time.Duration) service.Message {
	a.t.Helper()
	deadline := time.Now().Add(within)
	var m service.Message
	for time.Now().Before(deadline) {
		code, body, _ := a.do(http.MethodGet, "/v1/messages/"+id, nil, nil)
		if code == http.StatusServiceUnavailable { // Redis recovering: retry later, as told
			time.Sleep(20 * time.Millisecond)
			continue
		}
		require.Equal(a.t, http.StatusOK, code, "GET /v1/messages/%s: %s", id, body)
		m = service.Message{}
		require.NoError(a.t, json.Unmarshal(body, &m))
		if m.Status == want || (want == "" && m.Status.Terminal()) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("message %s: status %s after %s, want %s (%+v)", id, m.Status, within, want, m)
	return m
}

func order(openid string) service.SendRequest {
	return service.SendRequest{ToUser: openid, TemplateID: "order_shipped", Data: map[string]service.DataValue{
		"thing1": {Value: "巧克力礼盒"}, "character_string2": {Value: "SO-2026-000123"},
		"time3": {Value: "2026年11月23日 15:01"}, "phrase4": {Value: "已发货"},
	}}
}

// deliveries counts, per client_msg_id, the mock's non-deduplicated
// accepted sends (real deliveries) and all send calls.
func deliveries(t *testing.T, mock *mockwxtest.Server) (delivered map[string]int, calls map[string]int) {
	t.Helper()
	delivered, calls = map[string]int{}, map[string]int{}
	require.NoError(t, mock.Admin.AllMessages(t.Context(), 0, func(e mockwx.LedgerEntry) error {
		calls[e.ClientMsgID]++
		if e.ErrCode == 0 && !e.Deduplicated {
			delivered[e.ClientMsgID]++
		}
		return nil
	}))
	return delivered, calls
}

func openid(i int) string { return fmt.Sprintf("oUser-e2e-%08d", i) }
