package wxpushd

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// previousAESKey is configured as the demo app's previous key, only to
// check that it never leaks.
var previousAESKey = base64.StdEncoding.EncodeToString([]byte("previous-key-for-leak-checks-123"))[:wechat.EncodingAESKeyLength]

// retryProxy stands between mockwx's pusher and wxpushd's callback
// endpoint, as a network that loses answers: it forwards every push, and
// for the first push of each MsgID it answers 500 to the mock whatever
// wxpushd said, so the mock retries a report wxpushd has already recorded.
type retryProxy struct {
	t       *testing.T
	crypter *wechat.Crypter // opens pushes to read their MsgID
	target  atomic.Pointer[string]
	srv     *httptest.Server

	mu       sync.Mutex
	attempts map[int64]int
}

func newRetryProxy(t *testing.T) *retryProxy {
	cr, err := wechat.NewCrypter(wechat.CrypterConfig{Token: mockwx.DemoCallbackToken, AppID: mockwx.DemoAppID, EncodingAESKey: mockwx.DemoEncodingAESKey})
	require.NoError(t, err)
	p := &retryProxy{t: t, crypter: cr, attempts: map[int64]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *retryProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadGateway)
		return
	}
	msg, err := p.crypter.OpenCallback(r.URL.Query(), body)
	if err != nil {
		p.t.Errorf("retry proxy: the mock sent a push that does not open: %v", err)
		http.Error(w, "bad push", http.StatusBadGateway)
		return
	}
	target := p.target.Load()
	if target == nil {
		http.Error(w, "no target yet", http.StatusServiceUnavailable)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, *target+r.URL.Path+"?"+r.URL.RawQuery, bytes.NewReader(body))
	if err != nil {
		http.Error(w, "request", http.StatusBadGateway)
		return
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, "forward", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	p.mu.Lock()
	p.attempts[msg.MsgID]++
	first := p.attempts[msg.MsgID] == 1
	p.mu.Unlock()
	if first {
		http.Error(w, "answer lost", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(reply)
}

func counter(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// TestDeliveryCallbacksEndToEnd sends through wxpushd to mockwx with
// delivery reports pushed back in each callback mode, through a network
// that loses the first answer to every push: every message ends delivered
// or failed with the report's reason, once, and no secret leaks.
func TestDeliveryCallbacksEndToEnd(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlain, wechat.ModeCompat, wechat.ModeSafe} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			proxy := newRetryProxy(t)
			app := mockwx.DemoApp()
			app.CallbackURL = proxy.srv.URL + "/wechat/callback/default"
			app.CallbackMode = mode
			mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 5, Config: mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{app}}})
			cfg := testConfig(mock, redistest.New(t))
			cfg.Apps[0].CallbackToken = mockwx.DemoCallbackToken
			cfg.Apps[0].EncodingAESKey = mockwx.DemoEncodingAESKey
			cfg.Apps[0].PreviousEncodingAESKey = wechat.Secret(previousAESKey)
			cfg.Apps[0].CallbackMode = mode
			in := startInstance(t, cfg)
			target := in.URL()
			proxy.target.Store(&target)
			a := api{t: t, base: in.URL(), key: testAPIKey}

			failing := openid(900)
			addRule(t, mock, `{"endpoint":"callback","match":{"touser":"`+failing+`"},"delivery_status":"failed: system failed"}`)
			type want struct {
				status service.Status
				reason string
				raw    string
			}
			wants := map[string]want{}
			for i := range 5 {
				wants[a.send(order(openid(800+i)), "")] = want{service.StatusDelivered, "", wechat.StatusSuccess}
			}
			wants[a.send(order(mockwx.DemoBlocked), "")] = want{service.StatusFailed, service.ReasonUserBlock, wechat.StatusUserBlock}
			wants[a.send(order(failing), "")] = want{service.StatusFailed, service.ReasonSystemFailed, wechat.StatusSystemFailed}

			for id, w := range wants {
				m := a.waitStatus(id, w.status, 30*time.Second)
				assert.Equal(t, w.reason, m.Reason, "message %s", id)
				assert.Equal(t, w.raw, m.DeliveryStatus, "message %s", id)
				assert.NotZero(t, m.MsgID)
				assert.NotNil(t, m.SentAt)
				if w.status == service.StatusDelivered {
					assert.NotNil(t, m.DeliveredAt, "message %s", id)
				}
			}

			// Every push was retried once by the mock and acknowledged.
			n := int64(len(wants))
			require.Eventually(t, func() bool {
				st, err := mock.Admin.Stats(t.Context())
				require.NoError(t, err)
				return st.Callbacks.Pending == 0 && st.Callbacks.Acked == n
			}, 30*time.Second, 20*time.Millisecond, "the mock's pushes are all acknowledged")
			st, err := mock.Admin.Stats(t.Context())
			require.NoError(t, err)
			assert.GreaterOrEqual(t, st.Callbacks.Attempts, 2*n, "the first answer to each push was lost")
			assert.Zero(t, st.Callbacks.Failed)

			// Retries were recognized and made no second transition.
			m := in.Metrics()
			assert.Equal(t, float64(n), counter(t, m.Callbacks.WithLabelValues("default", callback.ResultReport)), "one recorded report per message")
			assert.GreaterOrEqual(t, counter(t, m.Callbacks.WithLabelValues("default", callback.ResultDuplicate)), float64(n), "every retry deduplicated")
			reports := func(o store.DeliveryOutcome) float64 {
				return counter(t, m.DeliveryReports.WithLabelValues("default", string(o)))
			}
			// Each recorded report was applied once: a move from sent, or
			// parked when it overtook the send's own write (Settle then
			// applied it).
			applied := reports(store.DeliveryDelivered) + reports(store.DeliveryFailed) + reports(store.DeliveryParked)
			assert.Equal(t, float64(n), applied, "one application per report")
			assert.Zero(t, reports(store.DeliveryFinal), "no report was applied twice")
			// Each failed message is counted once with its reason, whether
			// its report came after the send was recorded or was parked.
			assert.Equal(t, 1.0, counter(t, m.Failed.WithLabelValues("default", service.ReasonUserBlock)))
			assert.Equal(t, 1.0, counter(t, m.Failed.WithLabelValues("default", service.ReasonSystemFailed)))
			for id, w := range wants {
				got := a.get(id)
				assert.Equal(t, w.status, got.Status, "message %s is still %s", id, w.status)
			}

			// Forged and replayed pushes straight at wxpushd are refused.
			forged := url.Values{"signature": {strings.Repeat("0", 40)}, "timestamp": {"1"}, "nonce": {"2"}}
			code, _, _ := a.do(http.MethodPost, "/wechat/callback/default?"+forged.Encode(), nil, nil)
			assert.Equal(t, http.StatusForbidden, code)
			code, _, _ = a.do(http.MethodPost, "/wechat/callback/nope?"+forged.Encode(), nil, nil)
			assert.Equal(t, http.StatusNotFound, code)

			// No secret in the logs, the metrics or the API's answers.
			_, metricsBody, _ := a.do(http.MethodGet, "/metrics", nil, nil)
			everything := []string{in.logs.String(), string(metricsBody)}
			for id := range wants {
				_, b, _ := a.do(http.MethodGet, "/v1/messages/"+id, nil, nil)
				everything = append(everything, string(b))
			}
			all := strings.Join(everything, "\n")
			for name, secret := range map[string]string{
				"callback token": mockwx.DemoCallbackToken, "EncodingAESKey": mockwx.DemoEncodingAESKey,
				"previous EncodingAESKey": previousAESKey, "appsecret": mockwx.DemoAppSecret, "API key": testAPIKey,
			} {
				assert.NotContains(t, all, secret, "%s leaked", name)
			}
			assert.Contains(t, in.logs.String(), "callback rejected", "the forged push was logged")
			// Plain mode is weaker (the body is not signed): a WARN at start says so.
			plainWarn := strings.Contains(in.logs.String(), `"level":"WARN","msg":"app takes plaintext callbacks`)
			assert.Equal(t, mode == wechat.ModePlain, plainWarn, "WARN at start for an app in plain mode only")
		})
	}
}
