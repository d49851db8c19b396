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
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) // 20:00 in Shanghai
	w := newTestWorker(t, now)
	rec := &store.Record{Message: service.Message{ID: "m1", App: "default"}}
	entry := store.Entry{MessageID: "m1", Due: now.Add(-time.Hour)}
	e := func(code int) error { return &wechat.Error{API: wechat.APITemplateSend, Code: code, Msg: "x"} }
	log := slog.New(slog.DiscardHandler)
	midnightShanghai := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		attempt int
		err     error
		kind    store.SettleKind
		reason  string
		due     time.Duration // exact delay, or -1 for a jittered one
		refund  bool
		pause   *store.Pause // the pause it calls for (ErrMsg not compared)
	}{
		{"success", 1, nil, store.SettleSent, "", 0, false, nil},
		{"-1 retries with backoff", 1, e(-1), store.SettleRetry, "", -1, false, nil},
		{"-1 at the last attempt fails", 4, e(-1), store.SettleFail, service.ReasonAttemptsExhausted, 0, false, nil},
		{"transport error retries", 2, &wechat.CallError{Kind: wechat.CallTransport, Err: errors.New("reset")}, store.SettleRetry, "", -1, false, nil},
		{"token still invalid after the retry", 2, e(40001), store.SettleRetry, "", -1, false, nil},
		{"45011 pauses the app a minute, refunded", 1, e(45011), store.SettlePark, "", 0, true,
			&store.Pause{Reason: service.PauseMinuteLimit, Rank: rankMinute, ErrCode: 45011, Until: now.Add(time.Minute)}},
		{"45009 pauses until midnight Shanghai, refunded", 4, e(45009), store.SettlePark, "", 0, true,
			&store.Pause{Reason: service.PauseDailyQuota, Rank: rankQuota, ErrCode: 45009, Until: midnightShanghai, ProbeEvery: 5 * time.Minute}},
		{"app-level pauses until resumed, refunded", 4, e(40164), store.SettlePark, "", 0, true,
			&store.Pause{Reason: service.PauseAppError, Rank: rankApp, ErrCode: 40164, ProbeEvery: 10 * time.Minute}},
		{"permanent for the message", 1, e(43004), store.SettleFail, service.ReasonPermanentErrcode, 0, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pause := w.decide(log, rec, w.app("default"), entry, tt.attempt, 42, tt.err)
			assert.Equal(t, tt.kind, got.Kind)
			assert.Equal(t, tt.reason, got.Reason)
			assert.Equal(t, tt.refund, got.Refund)
			switch {
			case tt.kind == store.SettlePark:
				assert.True(t, got.Due.IsZero(), "a parked message keeps its entry's due time (Settle uses it)")
			case tt.kind != store.SettleRetry:
			case tt.due >= 0:
				assert.Equal(t, now.Add(tt.due), got.Due)
			default:
				assert.True(t, got.Due.After(now) && !got.Due.After(now.Add(time.Second)), "jittered due %s", got.Due)
			}
			if tt.pause == nil {
				assert.Nil(t, pause)
			} else if assert.NotNil(t, pause) {
				assert.True(t, tt.pause.Until.Equal(pause.Until), "until %s, want %s", pause.Until, tt.pause.Until)
				pause.ErrMsg, pause.Until, tt.pause.Until = "", time.Time{}, time.Time{}
				assert.Equal(t, *tt.pause, *pause)
			}
			if tt.err != nil {
				assert.True(t, got.HasErr)
				assert.Equal(t, wechat.Code(tt.err), got.ErrCode)
			} else {
				assert.Equal(t, int64(42), got.MsgID)
				assert.Equal(t, "20261123", got.QuotaDay, "the quota day of midnight Asia/Shanghai")
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
