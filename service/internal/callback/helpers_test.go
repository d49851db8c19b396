package callback_test

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// The app under test and its callback secrets.
const (
	appName    = "default"
	appID      = "wx0123456789abcdef"
	originalID = "gh_0123456789ab"
	cbToken    = "cb-token-secret-value-7f3a"
	// plainApp has a callback token but no EncodingAESKey.
	plainApp = "plainonly"
	// safeApp and compatApp take encrypted pushes only (the modes of
	// callback_mode); appName is in plain mode with a key, so it takes
	// every mode.
	safeApp   = "safeapp"
	compatApp = "compatapp"
)

var (
	aesKey      = base64.StdEncoding.EncodeToString([]byte("current-aes-key-0123456789abcdef"))[:wechat.EncodingAESKeyLength]
	previousKey = base64.StdEncoding.EncodeToString([]byte("previous-aes-key-0123456789abcde"))[:wechat.EncodingAESKeyLength]
)

// fixedNow is the receiver's clock.
var fixedNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// env is a Receiver on a real store, served by a gin engine.
type env struct {
	t       testing.TB
	redis   *redistest.Redis
	store   *store.Store
	recv    *callback.Receiver
	h       http.Handler
	metrics *metrics.Metrics
	logs    *syncbuf.Buffer
	sender  *wechat.Crypter // seals as WeChat does with the current key
	old     *wechat.Crypter // seals with the previous key
	nonce   int
}

func newCrypter(t testing.TB, cfg wechat.CrypterConfig) *wechat.Crypter {
	t.Helper()
	c, err := wechat.NewCrypter(cfg)
	require.NoError(t, err)
	return c
}

// settleErr drops Settle's report of what it applied.
func settleErr(_ store.Settled, err error) error { return err }

func newEnv(t testing.TB, mutate ...func(*callback.Options)) *env {
	t.Helper()
	r := redistest.New(t)
	e := &env{
		t: t, redis: r, store: store.New(r.Client, store.Options{Prefix: r.Prefix}),
		metrics: metrics.New(), logs: &syncbuf.Buffer{},
		sender: newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID, EncodingAESKey: aesKey}),
		old:    newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID, EncodingAESKey: previousKey}),
	}
	opts := callback.Options{
		Store: e.store, Consumer: "test", Now: func() time.Time { return fixedNow },
		Logger:  slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: e.metrics,
		Apps: []*apps.App{
			{Name: appName, Crypter: newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID, EncodingAESKey: aesKey, PreviousEncodingAESKey: previousKey})},
			{Name: plainApp, Crypter: newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID})},
			{Name: safeApp, CallbackMode: wechat.ModeSafe, Crypter: newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID, EncodingAESKey: aesKey})},
			{Name: compatApp, CallbackMode: wechat.ModeCompat, Crypter: newCrypter(t, wechat.CrypterConfig{Token: cbToken, AppID: appID, EncodingAESKey: aesKey})},
		},
	}
	for _, m := range mutate {
		m(&opts)
	}
	recv, err := callback.New(opts)
	require.NoError(t, err)
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	recv.Register(g)
	e.recv, e.h = recv, g
	return e
}

// report is a TEMPLATESENDJOBFINISH push.
func report(msgid int64, status string) *wechat.Message {
	return &wechat.Message{ToUserName: originalID, FromUserName: "oUser-callback-0001", CreateTime: fixedNow.Unix(),
		MsgType: wechat.MsgTypeEvent, Event: wechat.EventTemplateSendJobFinish, MsgID: msgid, Status: status}
}

// seal builds WeChat's request for msg: a fresh nonce each time, as
// WeChat's retries have.
func (e *env) seal(c *wechat.Crypter, msg *wechat.Message, mode wechat.Mode, ts time.Time) (url.Values, []byte) {
	e.t.Helper()
	e.nonce++
	q, body, err := c.SealCallback(msg, mode, ts.Unix(), strconv.Itoa(1000+e.nonce))
	require.NoError(e.t, err)
	return q, body
}

// post sends a push to app and returns the answer.
func (e *env) post(app string, q url.Values, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/wechat/callback/"+app+"?"+q.Encode(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/xml")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// get sends a URL verification.
func (e *env) get(app string, q url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/wechat/callback/"+app+"?"+q.Encode(), nil)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// sent stores a message of appName in status sent with msgid and returns
// its id.
func (e *env) sent(id string, msgid int64) string { return e.sentFor(appName, id, msgid) }

// sentFor stores a message of app in status sent with msgid and returns
// its id.
func (e *env) sentFor(app, id string, msgid int64) string {
	e.t.Helper()
	ctx := e.t.Context()
	_, err := e.store.Enqueue(ctx, []store.NewMessage{{
		ID: id, App: app, AcceptedAt: fixedNow,
		Request: service.SendRequest{App: app, ToUser: "oUser-callback-0001", TemplateID: "tpl",
			Data: map[string]service.DataValue{"thing1": {Value: "x"}}},
	}})
	require.NoError(e.t, err)
	entries, err := e.store.Read(ctx, "w", 1, 10*time.Millisecond)
	require.NoError(e.t, err)
	require.Len(e.t, entries, 1)
	_, _, err = e.store.MarkSending(ctx, id, fixedNow, store.Guard{})
	require.NoError(e.t, err)
	require.NoError(e.t, settleErr(e.store.Settle(ctx, entries[0], store.Settlement{Kind: store.SettleSent, App: app, ToUser: "oUser-callback-0001", MsgID: msgid}, fixedNow)))
	return id
}

func (e *env) message(id string) *service.Message {
	e.t.Helper()
	m, err := e.store.Get(e.t.Context(), id)
	require.NoError(e.t, err)
	return m
}

// process applies every recorded report and returns how many there were.
func (e *env) process() int {
	e.t.Helper()
	n, err := e.recv.ProcessPending(e.t.Context())
	require.NoError(e.t, err)
	return n
}

// recorded is the number of reports waiting in the stream plus the dedup
// keys written: zero when a rejected push changed nothing.
func (e *env) recorded() int {
	e.t.Helper()
	ctx := e.t.Context()
	keys, err := e.redis.Client.Keys(ctx, e.redis.Prefix+"cbseen:*").Result()
	require.NoError(e.t, err)
	n, err := e.redis.Client.Exists(ctx, e.redis.Prefix+"callbacks").Result()
	require.NoError(e.t, err)
	if n > 0 {
		l, err := e.redis.Client.XLen(ctx, e.redis.Prefix+"callbacks").Result()
		require.NoError(e.t, err)
		n = l
	}
	return len(keys) + int(n)
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func (e *env) callbacks(app, result string) float64 {
	return counterValue(e.t, e.metrics.Callbacks.WithLabelValues(app, result))
}

func (e *env) reports(outcome store.DeliveryOutcome) float64 {
	return counterValue(e.t, e.metrics.DeliveryReports.WithLabelValues(appName, string(outcome)))
}
