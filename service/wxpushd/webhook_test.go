package wxpushd

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/webhook"
)

const webhookSecret = wechat.Secret("webhook-secret-0123456789abcdef")

// hookReceiver is a status webhook receiver that checks every signature
// and refuses the first failFirst deliveries of each message (or all of
// them while down is set).
type hookReceiver struct {
	t         *testing.T
	srv       *httptest.Server
	failFirst int
	down      atomic.Bool

	mu       sync.Mutex
	attempts map[string]int                   // deliveries per message id
	accepted map[string][]service.StatusEvent // events answered 2xx, per message id
}

func newHookReceiver(t *testing.T, failFirst int) *hookReceiver {
	h := &hookReceiver{t: t, failFirst: failFirst, attempts: map[string]int{}, accepted: map[string][]service.StatusEvent{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	ts, sig := r.Header.Get(service.HeaderWebhookTimestamp), r.Header.Get(service.HeaderWebhookSignature)
	if !webhook.Verify(webhookSecret, ts, body, sig) {
		h.t.Errorf("webhook: bad signature %q over %s", sig, body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if webhook.Verify("another-secret-0123456789abcdef", ts, body, sig) {
		h.t.Errorf("webhook: a signature verifies with the wrong secret")
	}
	var ev service.StatusEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		h.t.Errorf("webhook: body %s: %v", body, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if got := r.Header.Get(service.HeaderWebhookMessageID); got != ev.Message.ID {
		h.t.Errorf("webhook: message id header %q, body %q", got, ev.Message.ID)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts[ev.Message.ID]++
	if h.down.Load() || h.attempts[ev.Message.ID] <= h.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	h.accepted[ev.Message.ID] = append(h.accepted[ev.Message.ID], ev)
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) snapshot() (attempts map[string]int, accepted map[string][]service.StatusEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	attempts, accepted = map[string]int{}, map[string][]service.StatusEvent{}
	for k, v := range h.attempts {
		attempts[k] = v
	}
	for k, v := range h.accepted {
		accepted[k] = append([]service.StatusEvent(nil), v...)
	}
	return attempts, accepted
}

func webhookConfig(mock *mockwxtest.Server, r *redistest.Redis, url string) Config {
	cfg := testConfig(mock, r)
	cfg.Apps[0].StatusWebhookURL = url
	cfg.Apps[0].StatusWebhookSecret = webhookSecret
	cfg.WebhookBackoffBase, cfg.WebhookBackoffCap, cfg.WebhookTimeout = 20*time.Millisecond, 100*time.Millisecond, time.Second
	return cfg
}

// TestStatusWebhook: each final status reaches the receiver signed, once
// per message, through the receiver's first failures. The app has no
// callback endpoint, so "sent" is final.
func TestStatusWebhook(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	hooks := newHookReceiver(t, 2)
	in := startInstance(t, webhookConfig(mock, redistest.New(t), hooks.srv.URL))
	a := api{t: t, base: in.URL(), key: testAPIKey}
	ids := a.sendMany("", 5, 0)
	failing := a.send(order(mockwx.DemoNotFollowing), "")
	want := append(append([]string(nil), ids...), failing)
	require.Eventually(t, func() bool {
		_, accepted := hooks.snapshot()
		return len(accepted) == len(want)
	}, 15*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // retries that should not come would arrive by now
	attempts, accepted := hooks.snapshot()
	for _, id := range want {
		require.Len(t, accepted[id], 1, "message %s: one accepted delivery", id)
		assert.Equal(t, 3, attempts[id], "message %s: two refused, then accepted", id)
		ev := accepted[id][0]
		assert.Equal(t, service.EventMessageStatus, ev.Event)
		assert.Equal(t, id, ev.Message.ID)
		assert.Equal(t, "default", ev.Message.App)
	}
	for _, id := range ids {
		assert.Equal(t, service.StatusSent, accepted[id][0].Message.Status)
		assert.NotZero(t, accepted[id][0].Message.MsgID)
	}
	assert.Equal(t, service.StatusFailed, accepted[failing][0].Message.Status)
	assert.Equal(t, service.ReasonPermanentErrcode, accepted[failing][0].Message.Reason)
	assert.Equal(t, float64(len(want)), counter(t, in.Metrics().Webhooks.WithLabelValues("default", "delivered")))
	assert.Equal(t, float64(2*len(want)), counter(t, in.Metrics().Webhooks.WithLabelValues("default", "retry")))
	assert.True(t, a.appStatus("default").StatusWebhook)
	assert.NotContains(t, in.logs.String(), webhookSecret.Reveal())
}

// TestStatusWebhookSurvivesACrash: events pending when an instance is
// killed are delivered by the next instance, once each.
func TestStatusWebhookSurvivesACrash(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	hooks := newHookReceiver(t, 0)
	hooks.down.Store(true)
	r := redistest.New(t)
	cfg := webhookConfig(mock, r, hooks.srv.URL)
	cfg.WebhookTimeout = 300 * time.Millisecond // a delivery cut by the kill is leased for 2x this + 5 s
	in1 := startInstance(t, cfg)
	a := api{t: t, base: in1.URL(), key: testAPIKey}
	ids := a.sendMany("", 4, 0)
	require.Eventually(t, func() bool {
		attempts, _ := hooks.snapshot()
		for _, id := range ids {
			if attempts[id] == 0 {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "every event was tried while the receiver was down")
	in1.Kill()
	<-in1.stopped
	_, accepted := hooks.snapshot()
	require.Empty(t, accepted)

	hooks.down.Store(false)
	cfg.Instance = "second"
	startInstance(t, cfg)
	require.Eventually(t, func() bool {
		_, accepted := hooks.snapshot()
		return len(accepted) == len(ids)
	}, 20*time.Second, 20*time.Millisecond, "the pending events are delivered after the restart")
	time.Sleep(300 * time.Millisecond)
	_, accepted = hooks.snapshot()
	for _, id := range ids {
		assert.Len(t, accepted[id], 1, "message %s", id)
	}
}
