package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
	"github.com/wxpush/wxpush/service/internal/webhook"
)

const hookSecret = wechat.Secret("event-hook-secret-value-0123")

// receiver is an event webhook receiver that honours the delivery id: it
// keeps the first delivery of each id, in arrival order per user, and can
// fail the first deliveries.
type receiver struct {
	t        testing.TB
	mu       sync.Mutex
	failNext int                 // answer 500 to this many more requests
	seen     map[string]bool     // delivery ids accepted
	perUser  map[string][]string // bodies accepted, by X-Wxpush-Event-Type... by user
	requests int
	srv      *httptest.Server
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, seen: map[string]bool{}, perUser: map[string][]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ts := req.Header.Get(service.HeaderWebhookTimestamp)
		if !webhook.Verify(hookSecret, ts, body, req.Header.Get(service.HeaderWebhookSignature)) {
			t.Errorf("bad signature on %s", body)
		}
		id := req.Header.Get(service.HeaderWebhookDeliveryID)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.failNext > 0 {
			r.failNext--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if !r.seen[id] {
			r.seen[id] = true
			user := req.Header.Get(service.HeaderWebhookEventType) // the tests put the user in the type
			r.perUser[user] = append(r.perUser[user], string(body))
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) snapshot() (map[string][]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for k, v := range r.perUser {
		out[k] = append([]string(nil), v...)
	}
	return out, r.requests
}

type fwdEnv struct {
	store *store.Store
	recv  *receiver
	app   *apps.App
	m     *metrics.Metrics
}

func newFwdEnv(t *testing.T) *fwdEnv {
	r := redistest.New(t)
	recv := newReceiver(t)
	return &fwdEnv{
		store: store.New(r.Client, store.Options{Prefix: r.Prefix}),
		recv:  recv,
		app:   &apps.App{Name: "default", EventWebhook: apps.Webhook{URL: recv.srv.URL + "/hook?token=x", Secret: hookSecret}},
		m:     metrics.New(),
	}
}

// record records push n of user (its type names the user, its payload
// its number).
func (e *fwdEnv) record(t *testing.T, user string, n int) {
	t.Helper()
	got, err := e.store.RecordPush(t.Context(), store.Push{
		App: "default", DedupKey: fmt.Sprintf("%s:%d", user, n), QueryID: fmt.Sprintf("q:%s:%d", user, n), BodySum: "s",
		OpenID: user, CreateTime: int64(n), Type: user, Forward: true, Payload: []byte(fmt.Sprintf(`{"n":%d}`, n)), ReceivedAt: time.Now(),
	}, time.Hour, time.Hour)
	require.NoError(t, err)
	require.Equal(t, store.RecordedNew, got)
}

func (e *fwdEnv) forwarder(t *testing.T, consumer string, mutate ...func(*webhook.ForwarderOptions)) *webhook.Forwarder {
	o := webhook.ForwarderOptions{
		Inbox: e.store, Apps: []*apps.App{e.app}, Consumer: consumer, Metrics: e.m,
		BackoffBase: time.Millisecond, BackoffCap: 5 * time.Millisecond, MoveEvery: 2 * time.Millisecond,
		Block: 10 * time.Millisecond, ReclaimAfter: time.Hour,
	}
	for _, m := range mutate {
		m(&o)
	}
	f, err := webhook.NewForwarder(o)
	require.NoError(t, err)
	return f
}

func want(ns ...int) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, fmt.Sprintf(`{"n":%d}`, n))
	}
	return out
}

// TestForwarderOrderAndRetries: with a receiver that fails often, every
// push arrives, once per delivery id, in order per user.
func TestForwarderOrderAndRetries(t *testing.T) {
	e := newFwdEnv(t)
	for n := range 5 {
		e.record(t, "userA", n)
		e.record(t, "userB", 100+n)
	}
	e.recv.failNext = 7
	f := e.forwarder(t, "f1")
	ctx := t.Context()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	require.Eventually(t, func() bool {
		got, _ := e.recv.snapshot()
		return len(got["userA"]) == 5 && len(got["userB"]) == 5
	}, 10*time.Second, 5*time.Millisecond)
	got, requests := e.recv.snapshot()
	require.Equal(t, want(0, 1, 2, 3, 4), got["userA"])
	require.Equal(t, want(100, 101, 102, 103, 104), got["userB"])
	require.GreaterOrEqual(t, requests, 17, "the failures were retried")
	n, err := e.store.PendingInbound(ctx, "default", "userA")
	require.NoError(t, err)
	require.Zero(t, n)
	// A push recorded later is forwarded too, after the others.
	e.record(t, "userA", 5)
	require.Eventually(t, func() bool { got, _ := e.recv.snapshot(); return len(got["userA"]) == 6 }, 10*time.Second, 5*time.Millisecond)
	got, _ = e.recv.snapshot()
	require.Equal(t, want(0, 1, 2, 3, 4, 5), got["userA"])
}

// TestForwarderReclaim: a forwarder that took a user's queue and died
// (never delivered, never acknowledged) does not lose it: another takes it
// over after the reclaim time and delivers in order.
func TestForwarderReclaim(t *testing.T) {
	e := newFwdEnv(t)
	for n := range 3 {
		e.record(t, "userA", n)
	}
	toks, err := e.store.ReadInbound(t.Context(), "crashed", 10, -1)
	require.NoError(t, err)
	require.Len(t, toks, 1, "the dead forwarder holds the user's queue")
	live := e.forwarder(t, "live", func(o *webhook.ForwarderOptions) { o.ReclaimAfter = 50 * time.Millisecond })
	n, err := live.RunOnce(t.Context(), -1, true)
	require.NoError(t, err)
	require.Zero(t, n, "not idle long enough yet")
	time.Sleep(60 * time.Millisecond)
	n, err = live.RunOnce(t.Context(), -1, true)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, _ := e.recv.snapshot()
	require.Equal(t, want(0, 1, 2), got["userA"])
}

// TestForwarderDeliveredTwiceSameID: a delivery whose outcome was lost (a
// forwarder that died after the receiver took it) comes again under the
// same delivery id, so the receiver keeps it once.
func TestForwarderDeliveredTwiceSameID(t *testing.T) {
	e := newFwdEnv(t)
	e.record(t, "userA", 0)
	var ids []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		ids = append(ids, req.Header.Get(service.HeaderWebhookDeliveryID))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	e.app.EventWebhook.URL = srv.URL
	// The first forwarder delivers, then "dies" before recording it: its
	// token stays pending and the push stays at the head.
	toks, err := e.store.ReadInbound(t.Context(), "crashed", 10, -1)
	require.NoError(t, err)
	p, _, err := e.store.NextInbound(t.Context(), toks[0].Queue)
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	req.Header.Set(service.HeaderWebhookDeliveryID, p.ID)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	live := e.forwarder(t, "live", func(o *webhook.ForwarderOptions) { o.ReclaimAfter = time.Millisecond })
	time.Sleep(5 * time.Millisecond)
	_, err = live.RunOnce(t.Context(), -1, true)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{p.ID, p.ID}, ids, "redelivered under the same id")
	require.Equal(t, store.DeliveryID("default", "userA:0"), p.ID)
}

// TestForwarderGivesUp: after MaxAttempts failures a push is given up and
// the user's next push goes on.
func TestForwarderGivesUp(t *testing.T) {
	e := newFwdEnv(t)
	e.record(t, "userA", 0)
	e.record(t, "userA", 1)
	e.recv.failNext = 2
	f := e.forwarder(t, "f1", func(o *webhook.ForwarderOptions) { o.MaxAttempts = 2 })
	go func() { _ = f.Run(t.Context()) }()
	require.Eventually(t, func() bool { got, _ := e.recv.snapshot(); return len(got["userA"]) == 1 }, 10*time.Second, 5*time.Millisecond)
	got, _ := e.recv.snapshot()
	require.Equal(t, want(1), got["userA"])
	require.Eventually(t, func() bool {
		return counterValue(t, e.m.EventWebhooks.WithLabelValues("default", "gave_up")) == 1
	}, 5*time.Second, 5*time.Millisecond)
}

func counterValue(t testing.TB, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
