package wxpushd

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
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
	"github.com/wxpush/wxpush/service/internal/pacing"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}

// appStatus reads GET /v1/apps/{app}.
func (a api) appStatus(app string) service.AppStatus {
	a.t.Helper()
	code, body, _ := a.do(http.MethodGet, "/v1/apps/"+app, nil, nil)
	require.Equal(a.t, http.StatusOK, code, "GET /v1/apps/%s: %s", app, body)
	var st service.AppStatus
	require.NoError(a.t, json.Unmarshal(body, &st))
	return st
}

// waitPaused polls the app's status until it is paused.
func (a api) waitPaused(app string, within time.Duration) service.AppStatus {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := a.appStatus(app)
		if st.State == service.AppPaused || time.Now().After(deadline) {
			require.Equal(a.t, service.AppPaused, st.State, "app %s after %s: %+v", app, within, st)
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a api) resume(app string) service.AppStatus {
	a.t.Helper()
	code, body, _ := a.do(http.MethodPost, "/v1/apps/"+app+"/resume", nil, nil)
	require.Equal(a.t, http.StatusOK, code, "POST /v1/apps/%s/resume: %s", app, body)
	var st service.AppStatus
	require.NoError(a.t, json.Unmarshal(body, &st))
	return st
}

// sendMany queues n messages of app and returns their ids.
func (a api) sendMany(app string, n, from int) []string {
	a.t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		req := order(openid(from + i))
		req.App = app
		ids = append(ids, a.send(req, ""))
	}
	return ids
}

// allNotFailed checks that none of ids has failed and none is final yet.
func (a api) noneFinal(ids []string) {
	a.t.Helper()
	for _, id := range ids {
		m := a.get(id)
		require.False(a.t, m.Status.Terminal(), "message %s is %s (%s) while its app is paused", id, m.Status, m.Reason)
	}
}

// sentAt lists the mock's accepted sends of appid by time.
func sentAt(t *testing.T, mock *mockwxtest.Server, appid string) []time.Time {
	t.Helper()
	var out []time.Time
	require.NoError(t, mock.Admin.AllMessages(t.Context(), 0, func(e mockwx.LedgerEntry) error {
		if e.AppID == appid {
			out = append(out, e.ReceivedAt)
		}
		return nil
	}))
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// maxPerSecond returns the most sends in any 1-second window: fixed
// windows (by second) and sliding ones (starting at each send).
func maxPerSecond(ts []time.Time) (fixed, sliding int) {
	buckets := map[int64]int{}
	for i, t := range ts {
		buckets[t.Unix()]++
		fixed = max(fixed, buckets[t.Unix()])
		n := 0
		for _, u := range ts[i:] {
			if u.Sub(t) >= time.Second {
				break
			}
			n++
		}
		sliding = max(sliding, n)
	}
	return fixed, sliding
}

// TestRateLimitAcrossInstances: two instances share the app's rate limit
// R: the mock sees at most R (+ tolerance) sends in any second.
func TestRateLimitAcrossInstances(t *testing.T) {
	const rate, n = 20, 100
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.Apps[0].RateLimit = rate
	in1 := startInstance(t, cfg)
	in2 := startInstance(t, cfg)
	a1 := api{t: t, base: in1.URL(), key: testAPIKey}
	a2 := api{t: t, base: in2.URL(), key: testAPIKey}
	ids := append(a1.sendMany("", n/2, 0), a2.sendMany("", n/2, n/2)...)
	for _, id := range ids {
		m := a1.waitStatus(id, service.StatusSent, 30*time.Second)
		assert.Equal(t, 1, m.Attempts, "waiting for a rate slot spends no attempt")
	}
	ts := sentAt(t, mock, mock.App.AppID)
	require.Len(t, ts, n)
	fixed, sliding := maxPerSecond(ts)
	span := ts[len(ts)-1].Sub(ts[0])
	t.Logf("rate limit %d/s across 2 instances: %d sends in %s (%.1f/s); max per fixed second %d, per sliding second %d",
		rate, n, span.Round(time.Millisecond), float64(n-1)/span.Seconds(), fixed, sliding)
	limit := int(rate*1.25) + 1 // burst 1; slots may be used up to SlotGrace late
	assert.LessOrEqual(t, fixed, limit, "sends in one calendar second")
	assert.LessOrEqual(t, sliding, limit, "sends in any 1-second window")
	// Both instances sent: the limit is shared, not split.
	st := a1.appStatus("default")
	assert.Equal(t, float64(rate), st.RateLimit)
	assert.Equal(t, int64(n), st.QuotaUsedToday, "sends counted in today's quota")
	assert.Positive(t, counter(t, in1.Metrics().Sent.WithLabelValues("default")))
	assert.Positive(t, counter(t, in2.Metrics().Sent.WithLabelValues("default")))
}

// TestMinuteLimitStorm: 45011 pauses the app for PaceDelay across
// instances; the messages wait and are all sent, none failed, no attempt
// spent.
func TestMinuteLimitStorm(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.PaceDelay = 2 * time.Second
	in1 := startInstance(t, cfg)
	in2 := startInstance(t, cfg)
	a := api{t: t, base: in1.URL(), key: testAPIKey}
	addRule(t, mock, `{"endpoint":"template_send","errcode":45011,"times":3}`)
	start := time.Now()
	ids := a.sendMany("", 20, 0)
	st := a.waitPaused("default", 5*time.Second)
	require.NotNil(t, st.Pause)
	assert.Equal(t, service.PauseMinuteLimit, st.Pause.Reason)
	assert.Equal(t, 45011, st.Pause.ErrCode)
	require.NotNil(t, st.Pause.Until, "a minute-limit pause ends by itself")
	assert.WithinDuration(t, st.Pause.Since.Add(cfg.PaceDelay), *st.Pause.Until, 50*time.Millisecond)
	other := api{t: t, base: in2.URL(), key: testAPIKey}.appStatus("default")
	assert.Equal(t, service.AppPaused, other.State, "every instance sees the pause")
	for _, id := range ids {
		m := a.waitStatus(id, service.StatusSent, 20*time.Second)
		assert.Equal(t, 1, m.Attempts, "message %s", id)
	}
	// Nothing was sent during the pause: past the sends that were
	// already under way when the first 45011 came (allowed 500 ms), the
	// mock sees nothing until the pause ends.
	var first45011 time.Time
	var during []time.Time
	ledger := []mockwx.LedgerEntry{}
	require.NoError(t, mock.Admin.AllMessages(t.Context(), 0, func(e mockwx.LedgerEntry) error {
		ledger = append(ledger, e)
		if e.ErrCode == 45011 && first45011.IsZero() {
			first45011 = e.ReceivedAt
		}
		return nil
	}))
	for _, e := range ledger {
		if d := e.ReceivedAt.Sub(first45011); d > 500*time.Millisecond && d < cfg.PaceDelay-200*time.Millisecond {
			during = append(during, e.ReceivedAt)
		}
	}
	assert.Empty(t, during, "sends while the app was paused")
	t.Logf("45011 storm: 20 messages all sent in %s over 2 instances, %d ledger entries",
		time.Since(start).Round(time.Millisecond), len(ledger))
	assert.Equal(t, service.AppActive, a.appStatus("default").State)
}

// TestDailyQuotaPauseAndResume: 45009 pauses the app until its quota
// reset (no probe here); messages wait, none fails; an operator's resume
// sends them all.
func TestDailyQuotaPauseAndResume(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	cfg.QuotaDelay = -1 // no probe: wait for the reset or the operator
	cfg.Apps[0].QuotaReset = "04:00 Asia/Shanghai"
	cfg.Workers = 1 // one send at a time, so the order of sends is the order of the queue
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}
	rule := addRule(t, mock, `{"endpoint":"template_send","errcode":45009}`)
	ids := a.sendMany("", 10, 0)
	st := a.waitPaused("default", 5*time.Second)
	require.NotNil(t, st.Pause)
	assert.Equal(t, service.PauseDailyQuota, st.Pause.Reason)
	require.NotNil(t, st.Pause.Until)
	reset, err := pacing.ParseReset("04:00 Asia/Shanghai")
	require.NoError(t, err)
	assert.True(t, reset.Next(time.Now()).Equal(*st.Pause.Until), "until %s is the next 04:00 in Shanghai", st.Pause.Until)
	assert.Nil(t, st.Pause.NextProbeAt)
	assert.Equal(t, "04:00 Asia/Shanghai", st.QuotaReset)
	// All ten end up waiting in order; none is sent or failed.
	require.Eventually(t, func() bool { return a.appStatus("default").Waiting == 10 }, 5*time.Second, 20*time.Millisecond)
	a.noneFinal(ids)
	st = a.appStatus("default")
	assert.Equal(t, service.AppPaused, st.State)

	require.NoError(t, mock.Admin.DeleteFault(t.Context(), rule)) // the operator raised the quota
	after := a.resume("default")
	assert.Equal(t, service.AppActive, after.State)
	for _, id := range ids {
		m := a.waitStatus(id, service.StatusSent, 10*time.Second)
		assert.Equal(t, 1, m.Attempts)
	}
	// The messages went in their order of due time (creation order).
	var order []string
	require.NoError(t, mock.Admin.AllMessages(t.Context(), 0, func(e mockwx.LedgerEntry) error {
		if e.ErrCode == 0 {
			order = append(order, e.ClientMsgID)
		}
		return nil
	}))
	assert.Equal(t, ids, order, "sent in order of due time")
	code, body, _ := a.do(http.MethodPost, "/v1/apps/nope/resume", nil, nil)
	assert.Equal(t, http.StatusNotFound, code, "%s", body)
	assert.Contains(t, string(body), `"code":"not_found"`)
}

// TestOneAppPausedOthersFlow: app "b" keeps sending everything while app
// "default" is paused by 45009.
func TestOneAppPausedOthersFlow(t *testing.T) {
	demo := mockwx.DemoApp()
	second := mockwx.App{AppID: "wx00000000000000b1", Secret: "second-app-secret-0123456789abcd", Templates: demo.Templates}
	mock := mockwxtest.NewServer(t, mockwxtest.Options{Config: mockwx.Config{Apps: []mockwx.App{second}}})
	cfg := testConfig(mock, redistest.New(t))
	cfg.QuotaDelay = -1
	cfg.Apps = append(cfg.Apps, AppConfig{Name: "b", AppID: second.AppID, Secret: wechat.Secret(second.Secret), RateLimit: 200})
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}
	addRule(t, mock, `{"endpoint":"template_send","match":{"appid":"`+demo.AppID+`"},"errcode":45009}`)
	paused := a.sendMany("default", 40, 0)
	a.waitPaused("default", 5*time.Second)
	others := a.sendMany("b", 60, 100)
	for _, id := range others {
		a.waitStatus(id, service.StatusSent, 15*time.Second)
	}
	// While every message of "b" went through, "default" stayed paused
	// and none of its messages failed.
	st := a.appStatus("default")
	assert.Equal(t, service.AppPaused, st.State)
	assert.Equal(t, service.AppActive, a.appStatus("b").State)
	a.noneFinal(paused)
	assert.Len(t, sentAt(t, mock, second.AppID), 60)
	require.NoError(t, mock.Admin.ClearFaults(t.Context()))
	a.resume("default")
	for _, id := range paused {
		a.waitStatus(id, service.StatusSent, 15*time.Second)
	}
	assert.Equal(t, float64(1), counter(t, in.Metrics().AppPauses.WithLabelValues("default", service.PauseDailyQuota)))
}

// TestPermanentAppErrorPausesUntilResumed: an app-level errcode (40164,
// IP not whitelisted) pauses the app with an ERROR log line and the
// paused gauge; messages wait, none fails, until the operator resumes.
func TestPermanentAppErrorPausesUntilResumed(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	cfg.AppDelay = 0 // no probe: only the operator
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}
	rule := addRule(t, mock, `{"endpoint":"template_send","errcode":40164}`)
	ids := a.sendMany("", 8, 0)
	st := a.waitPaused("default", 5*time.Second)
	require.NotNil(t, st.Pause)
	assert.Equal(t, service.PauseAppError, st.Pause.Reason)
	assert.Equal(t, 40164, st.Pause.ErrCode)
	assert.Nil(t, st.Pause.Until, "no end but the operator")
	require.Eventually(t, func() bool { return a.appStatus("default").Waiting == 8 }, 5*time.Second, 20*time.Millisecond)
	a.noneFinal(ids)
	for _, id := range ids {
		assert.Equal(t, 0, a.get(id).Attempts, "no attempt burned")
	}
	m := in.Metrics()
	require.Eventually(t, func() bool {
		return gauge(t, m.AppPaused.WithLabelValues("default", service.PauseAppError)) == 1
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, float64(1), counter(t, m.AppPauses.WithLabelValues("default", service.PauseAppError)))
	logs := in.logs.String()
	assert.Contains(t, logs, `"level":"ERROR","msg":"APP PAUSED`)
	assert.Equal(t, 1, strings.Count(logs, "APP PAUSED"), "one alert per pause, not per message")
	calls, err := mock.Admin.Stats(t.Context())
	require.NoError(t, err)
	refused := calls.ByErrcode["40164"]
	assert.LessOrEqual(t, refused, int64(cfg.Workers), "only the sends already under way were refused")
	time.Sleep(300 * time.Millisecond) // a few feeder rounds: nothing more may be sent
	calls, err = mock.Admin.Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, refused, calls.ByErrcode["40164"], "nothing is sent while paused")

	require.NoError(t, mock.Admin.DeleteFault(t.Context(), rule))
	a.resume("default")
	for _, id := range ids {
		a.waitStatus(id, service.StatusSent, 10*time.Second)
	}
	require.Eventually(t, func() bool {
		return gauge(t, m.AppPaused.WithLabelValues("default", service.PauseAppError)) == 0
	}, 5*time.Second, 20*time.Millisecond)
}
