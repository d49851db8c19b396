package worker

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/store"
)

func newTestWorker(t *testing.T, now time.Time) *Worker {
	t.Helper()
	w, err := New(nil, nil, nil, Options{
		Consumer: "test", MaxAttempts: 4, BackoffBase: 100 * time.Millisecond, BackoffCap: time.Second,
		PaceDelay: time.Minute, QuotaDelay: 5 * time.Minute, AppDelay: 10 * time.Minute,
		Now: func() time.Time { return now }, Rand: rand.New(rand.NewPCG(1, 2)),
	})
	require.NoError(t, err)
	return w
}

func TestNewRequiresConsumer(t *testing.T) {
	_, err := New(nil, nil, nil, Options{})
	assert.Error(t, err)
}

// TestBackoffIsFullJitter: delays are uniform in (0, min(cap, base*2^(n-1))].
func TestBackoffIsFullJitter(t *testing.T) {
	w := newTestWorker(t, time.Now())
	for _, tt := range []struct {
		attempt int
		bound   time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {40, time.Second}} {
		var lo, hi time.Duration = tt.bound, 0
		for range 2000 {
			d := w.backoff(tt.attempt)
			require.Greater(t, d, time.Duration(0), "attempt %d", tt.attempt)
			require.LessOrEqual(t, d, tt.bound, "attempt %d", tt.attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		assert.Less(t, lo, tt.bound/10, "attempt %d: full jitter reaches near zero", tt.attempt)
		assert.Greater(t, hi, tt.bound*9/10, "attempt %d: and near the bound", tt.attempt)
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	w := newTestWorker(t, now)
	rec := &store.Record{Message: service.Message{ID: "m1", App: "default"}}
	e := func(code int) error { return &wechat.Error{API: wechat.APITemplateSend, Code: code, Msg: "x"} }
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		attempt int
		err     error
		kind    store.SettleKind
		reason  string
		due     time.Duration // exact delay, or -1 for a jittered one
		refund  bool
	}{
		{"success", 1, nil, store.SettleSent, "", 0, false},
		{"-1 retries with backoff", 1, e(-1), store.SettleRetry, "", -1, false},
		{"-1 at the last attempt fails", 4, e(-1), store.SettleFail, service.ReasonAttemptsExhausted, 0, false},
		{"transport error retries", 2, &wechat.CallError{Kind: wechat.CallTransport, Err: errors.New("reset")}, store.SettleRetry, "", -1, false},
		{"token still invalid after the retry", 2, e(40001), store.SettleRetry, "", -1, false},
		{"45011 paces, refunded", 1, e(45011), store.SettleRetry, "", time.Minute, true},
		{"45009 waits for quota, refunded", 4, e(45009), store.SettleRetry, "", 5 * time.Minute, true},
		{"app-level waits, refunded", 4, e(40164), store.SettleRetry, "", 10 * time.Minute, true},
		{"permanent for the message", 1, e(43004), store.SettleFail, service.ReasonPermanentErrcode, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := w.decide(log, rec, tt.attempt, 42, tt.err)
			assert.Equal(t, tt.kind, got.Kind)
			assert.Equal(t, tt.reason, got.Reason)
			assert.Equal(t, tt.refund, got.Refund)
			switch {
			case tt.kind != store.SettleRetry:
			case tt.due >= 0:
				assert.Equal(t, now.Add(tt.due), got.Due)
			default:
				assert.True(t, got.Due.After(now) && !got.Due.After(now.Add(time.Second)), "jittered due %s", got.Due)
			}
			if tt.err != nil {
				assert.True(t, got.HasErr)
				assert.Equal(t, wechat.Code(tt.err), got.ErrCode)
			} else {
				assert.Equal(t, int64(42), got.MsgID)
			}
		})
	}
}

func TestToWeChatUsesTheMessageIDAsClientMsgID(t *testing.T) {
	rec := &store.Record{Message: service.Message{ID: "06H0ABC"}, Request: service.SendRequest{
		ToUser: "o1", TemplateID: "t", URL: "https://x", MiniProgram: &service.MiniProgram{AppID: "wxm", PagePath: "p"},
		Data: map[string]service.DataValue{"k": {Value: "v", Color: "#000000"}},
	}}
	m := toWeChat(rec)
	assert.Equal(t, "06H0ABC", m.ClientMsgID)
	assert.Equal(t, &wechat.MiniProgram{AppID: "wxm", PagePath: "p"}, m.MiniProgram)
	assert.Equal(t, wechat.DataItem{Value: "v", Color: "#000000"}, m.Data["k"])
}

func TestOutcomeLabel(t *testing.T) {
	assert.Equal(t, "0", outcomeLabel(nil))
	assert.Equal(t, "40001", outcomeLabel(&wechat.Error{Code: 40001}))
	assert.Equal(t, "http_502", outcomeLabel(&wechat.CallError{Kind: wechat.CallHTTPStatus, StatusCode: 502}))
	assert.Equal(t, "timeout", outcomeLabel(&wechat.CallError{Kind: wechat.CallTimeout}))
	assert.Equal(t, "error", outcomeLabel(errors.New("x")))
}
