package wxpushd

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestCrashMidSendIsReclaimed: instance A is killed in the middle of its
// sends (Kill: nothing more is acknowledged); instance B reclaims the
// entries after the visibility timeout and resends them with the same
// client_msg_id. Every message ends sent, delivered exactly once.
func TestCrashMidSendIsReclaimed(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.Visibility = time.Second
	a := startInstance(t, cfg)
	api := api{t: t, base: a.URL(), key: testAPIKey}

	// A's sends hang long enough for the crash to land mid-send.
	addRule(t, mock, `{"endpoint":"template_send","latency":{"fixed_ms":600},"times":8}`)
	var ids []string
	for i := range 8 {
		ids = append(ids, api.send(order(openid(200+i)), ""))
	}
	require.Eventually(t, func() bool {
		st, err := mock.Admin.Stats(t.Context())
		return err == nil && st.SendCalls >= 4
	}, 10*time.Second, 10*time.Millisecond, "A is sending")
	a.Kill() // the crash: A can no longer acknowledge anything
	select {
	case <-a.stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after Kill")
	}

	b := startInstance(t, cfg)
	bapi := api
	bapi.base = b.URL()
	for _, id := range ids {
		m := bapi.waitStatus(id, service.StatusSent, 20*time.Second)
		assert.GreaterOrEqual(t, m.Attempts, 1)
	}
	delivered, _ := deliveries(t, mock)
	for _, id := range ids {
		assert.Equal(t, 1, delivered[id], "message %s delivered exactly once", id)
	}
	assert.Contains(t, b.logs.String(), "reclaimed a message from a stopped worker")
}

// TestRedisOutageAndEmptyRestart: while Redis is down the API answers 503
// and acknowledges nothing; when it comes back empty (restart without
// persistence) the service recovers by itself. Runs against miniredis and,
// when the binary is installed, a real redis-server process.
func TestRedisOutageAndEmptyRestart(t *testing.T) {
	for kind, newServer := range redistest.Servers(t) {
		t.Run(kind, func(t *testing.T) {
			mock := mockwxtest.NewServer(t, mockwxtest.Options{})
			srv := newServer(t)
			r := &redistest.Redis{Prefix: "outage:{wxp}:", URL: srv.URL()}
			in := startInstance(t, testConfig(mock, r))
			a := api{t: t, base: in.URL(), key: testAPIKey}

			before := a.send(order(openid(300)), "")
			a.waitStatus(before, service.StatusSent, 10*time.Second)

			srv.Stop()
			code, body, hdr := a.do(http.MethodPost, "/v1/messages", order(openid(301)), nil)
			assert.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
			assert.Contains(t, string(body), service.CodeUnavailable)
			assert.NotEmpty(t, hdr.Get("Retry-After"))
			code, _, _ = a.do(http.MethodGet, "/readyz", nil, nil)
			assert.Equal(t, http.StatusServiceUnavailable, code)
			code, _, _ = a.do(http.MethodGet, "/healthz", nil, nil)
			assert.Equal(t, http.StatusOK, code, "liveness does not depend on Redis")

			srv.StartEmpty(t) // no stream, no group, no records
			require.Eventually(t, func() bool {
				code, _, _ := a.do(http.MethodGet, "/readyz", nil, nil)
				return code == http.StatusOK
			}, 15*time.Second, 50*time.Millisecond)
			var after string
			require.Eventually(t, func() bool {
				code, body, _ := a.do(http.MethodPost, "/v1/messages", order(openid(302)), nil)
				if code != http.StatusAccepted {
					return false
				}
				var acc service.Accepted
				_ = json.Unmarshal(body, &acc)
				after = acc.ID
				return true
			}, 15*time.Second, 50*time.Millisecond)
			a.waitStatus(after, service.StatusSent, 15*time.Second)
			assert.Contains(t, in.logs.String(), "queue read failed")
		})
	}
}

// TestTokenSharedAcrossInstances: two instances, a 3 s token lifetime, a
// load of sends and a 40001 storm; token calls stay about one per lifetime
// and every message is delivered exactly once.
func TestTokenSharedAcrossInstances(t *testing.T) {
	for _, mode := range []string{"stable", "classic"} {
		t.Run(mode, func(t *testing.T) {
			app := mockwx.DemoApp()
			app.TokenExpiresIn = 3
			mock := mockwxtest.NewServer(t, mockwxtest.Options{Config: mockwx.Config{Apps: []mockwx.App{app}, NoDemoApp: true}})
			r := redistest.New(t)
			cfg := testConfig(mock, r)
			cfg.TokenMode = "stable"
			if mode == "classic" {
				cfg.TokenMode = "classic"
			}
			cfg.MaxAttempts = 10
			in1, in2 := startInstance(t, cfg), startInstance(t, cfg)
			apis := []api{{t: t, base: in1.URL(), key: testAPIKey}, {t: t, base: in2.URL(), key: testAPIKey}}
			// A 40001 storm on 10% of sends for the first 2 s.
			addRule(t, mock, `{"endpoint":"template_send","errcode":40001,"probability":0.1,"for_ms":2000}`)

			start := time.Now()
			var mu sync.Mutex
			var ids []string
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := 0; time.Since(start) < 6*time.Second; i++ {
						id := apis[w%2].send(order(openid(w*10000+i)), "")
						mu.Lock()
						ids = append(ids, id)
						mu.Unlock()
						time.Sleep(15 * time.Millisecond)
					}
				})
			}
			wg.Wait()
			for _, id := range ids {
				apis[0].waitStatus(id, service.StatusSent, 30*time.Second)
			}
			elapsed := time.Since(start)
			st, err := mock.Admin.Stats(t.Context())
			require.NoError(t, err)
			calls := st.TokenCalls + st.StableTokenCalls
			// One fetch per lifetime (refreshed ahead, so up to 2 per 3 s) plus the storm's refreshes.
			bound := int64(math.Ceil(elapsed.Seconds()/1.5)) + 6
			t.Logf("%s mode: %d messages in %s, token calls %d (bound %d), 40001 injected %d", mode, len(ids), elapsed.Round(time.Millisecond), calls, bound, st.ByErrcode["40001"])
			assert.LessOrEqual(t, calls, bound, "token calls stay about one per lifetime across instances")
			delivered, _ := deliveries(t, mock)
			for _, id := range ids {
				assert.Equal(t, 1, delivered[id], "message %s delivered exactly once", id)
			}
		})
	}
}

// TestGracefulShutdown: stopping an instance with sends in flight returns
// within the bound; what it had not finished is completed by another
// instance, exactly once.
func TestGracefulShutdown(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.Visibility = time.Second
	a := startInstance(t, cfg)
	api := api{t: t, base: a.URL(), key: testAPIKey}
	addRule(t, mock, `{"endpoint":"template_send","latency":{"fixed_ms":300}}`)
	var ids []string
	for i := range 30 {
		ids = append(ids, api.send(order(openid(400+i)), ""))
	}
	time.Sleep(100 * time.Millisecond) // let some sends start
	start := time.Now()
	a.stop(t)
	assert.Less(t, time.Since(start), cfg.ShutdownTimeout+5*time.Second, "shutdown is bounded by the timeout (plus slack for a loaded machine)")

	b := startInstance(t, cfg)
	api.base = b.URL()
	for _, id := range ids {
		api.waitStatus(id, service.StatusSent, 30*time.Second)
	}
	delivered, _ := deliveries(t, mock)
	for _, id := range ids {
		assert.Equal(t, 1, delivered[id], "message %s delivered exactly once", id)
	}
}

// TestSecretsNeverLeak drives failures that carry credentials around and
// checks that no appsecret, access_token or API key reaches the logs, the
// metrics, the API's answers or the stored errors.
func TestSecretsNeverLeak(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.MaxAttempts = 8
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}

	addRule(t, mock, `{"endpoint":"template_send","errcode":40001,"times":3}`)
	addRule(t, mock, `{"endpoint":"template_send","fault":"reset","times":1}`)
	id := a.send(order(openid(500)), "")
	m := a.waitStatus(id, service.StatusSent, 15*time.Second)

	tokenJSON, err := r.Client.Get(t.Context(), r.Prefix+"token:default").Result()
	require.NoError(t, err, "the shared token cache")
	var cached struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal([]byte(tokenJSON), &cached))
	require.NotEmpty(t, cached.Token)

	// A second instance with a wrong secret: token errors everywhere.
	bad := cfg
	bad.Apps = []AppConfig{{Name: "default", AppID: mock.App.AppID, Secret: "wrong-secret-value-123"}}
	bad.KeyPrefix = r.Prefix + "bad:"
	in2 := startInstance(t, bad)
	a2 := api{t: t, base: in2.URL(), key: testAPIKey}
	id2 := a2.send(order(openid(501)), "")
	require.Eventually(t, func() bool { return a2.get(id2).LastError != nil }, 10*time.Second, 20*time.Millisecond)

	_, metricsBody, _ := a.do(http.MethodGet, "/metrics", nil, nil)
	_, msgBody, _ := a.do(http.MethodGet, "/v1/messages/"+id, nil, nil)
	_, msgBody2, _ := a2.do(http.MethodGet, "/v1/messages/"+id2, nil, nil)
	_, unauthorized, _ := api{t: t, base: in.URL(), key: "not-the-key-0123456789"}.do(http.MethodGet, "/v1/messages/"+id, nil, nil)
	everything := strings.Join([]string{in.logs.String(), in2.logs.String(), string(metricsBody), string(msgBody), string(msgBody2), string(unauthorized)}, "\n")
	for name, secret := range map[string]string{
		"appsecret": mock.App.Secret, "wrong appsecret": "wrong-secret-value-123", "access_token": cached.Token, "API key": testAPIKey,
	} {
		assert.NotContains(t, everything, secret, "%s leaked", name)
	}
	assert.NotContains(t, everything, "access_token=", "a request URL leaked")
	assert.Contains(t, string(msgBody2), "40125", "the stored error keeps the errcode")
	require.NotNil(t, m.LastError, "the failed attempts are recorded")
}

func TestConfigRefusesToStartWithoutKeys(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	cfg.APIKeys = nil
	_, err := New(t.Context(), cfg, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WXPUSH_API_KEYS")
	cfg.InsecureNoAuth = true
	in := startInstance(t, cfg)
	assert.Contains(t, in.logs.String(), "API AUTHENTICATION DISABLED")
	code, _, _ := api{t: t, base: in.URL()}.do(http.MethodGet, "/v1/messages/nope", nil, nil)
	assert.Equal(t, http.StatusNotFound, code, "no key needed with --insecure-no-auth")
}
