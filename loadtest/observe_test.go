package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
)

// TestDescribeRule: a rule's action is described whether the rule was
// written in the flat form or the typed one.
func TestDescribeRule(t *testing.T) {
	for src, want := range map[string]string{
		`{"endpoint":"template_send","errcode":45009}`:                                   "template_send errcode 45009",
		`{"endpoint":"template_send","action":{"type":"errcode","errcode":45009}}`:       "template_send errcode 45009",
		`{"endpoint":"*","fault":"reset"}`:                                               "* reset",
		`{"endpoint":"*","action":{"type":"fault","fault":"reset"}}`:                     "* reset",
		`{"endpoint":"template_send","action":{"type":"http_status","http_status":502}}`: "template_send HTTP 502",
		`{"endpoint":"callback","delivery_status":"failed:user block"}`:                  "callback delivery failed:user block",
	} {
		var r mockwx.Rule
		require.NoError(t, json.Unmarshal([]byte(src), &r), src)
		assert.Equal(t, want, describeRule(r), src)
	}
}

// metricsText is an instance's /metrics with the given counters.
func metricsText(sent, retries float64, attempts map[string]float64) string {
	s := fmt.Sprintf("# TYPE wxpush_messages_sent_total counter\nwxpush_messages_sent_total{app=\"a\"} %g\n", sent)
	s += fmt.Sprintf("# TYPE wxpush_retries_total counter\nwxpush_retries_total{app=\"a\",class=\"retry\"} %g\n", retries)
	s += "# TYPE wxpush_send_attempts_total counter\n"
	for code, n := range attempts {
		s += fmt.Sprintf("wxpush_send_attempts_total{app=\"a\",errcode=%q} %g\n", code, n)
	}
	s += "# TYPE wxpush_queue_depth gauge\nwxpush_queue_depth 3\n"
	return s
}

// fakeInstances serves /metrics for a changing set of instances: the
// sampler sees the URLs of those up, each answering its current text.
type fakeInstances struct {
	mu    sync.Mutex
	srvs  map[string]*httptest.Server
	texts map[string]string
	up    []string
}

func newFakeInstances(t *testing.T, names ...string) *fakeInstances {
	f := &fakeInstances{srvs: map[string]*httptest.Server{}, texts: map[string]string{}}
	for _, n := range names {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			_, _ = io.WriteString(w, f.texts[n])
		}))
		t.Cleanup(srv.Close)
		f.srvs[n] = srv
	}
	return f
}

// set makes the named instances the ones up, with these metrics.
func (f *fakeInstances) set(texts map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = nil
	for _, n := range []string{"a", "b"} {
		if t, ok := texts[n]; ok {
			f.texts[n] = t
			f.up = append(f.up, f.srvs[n].URL)
		}
	}
}

func (f *fakeInstances) urls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.up...)
}

// TestSamplerDeltasAcrossAKill feeds the sampler scrapes of two instances,
// one of which is killed (its last scrape is kept) and started again from
// zero: the figures are per-run deltas, and the cumulative ones never go
// down.
func TestSamplerDeltasAcrossAKill(t *testing.T) {
	f := newFakeInstances(t, "a", "b")
	s := &sampler{urls: f.urls}
	ctx := t.Context()
	steps := []struct {
		name  string
		texts map[string]string
		sent  float64 // the run's sends so far
		codes map[string]float64
		up    int
	}{
		// Both up before the load, with history: the run counts from here.
		{"baseline", map[string]string{"a": metricsText(10, 1, map[string]float64{"0": 10}), "b": metricsText(5, 0, map[string]float64{"0": 5})}, 0, map[string]float64{}, 2},
		{"load", map[string]string{"a": metricsText(30, 3, map[string]float64{"0": 30, "45009": 2}), "b": metricsText(20, 0, map[string]float64{"0": 20})}, 35, map[string]float64{"0": 35, "45009": 2}, 2},
		// The scrape just before b is killed.
		{"before the kill", map[string]string{"a": metricsText(35, 3, map[string]float64{"0": 35, "45009": 2}), "b": metricsText(24, 0, map[string]float64{"0": 24})}, 44, map[string]float64{"0": 44, "45009": 2}, 2},
		{"b is down", map[string]string{"a": metricsText(40, 4, map[string]float64{"0": 40, "45009": 2})}, 49, map[string]float64{"0": 49, "45009": 2}, 1},
		// b is back, a new process counting from zero, that sent more
		// before its first scrape than the old one had.
		{"b restarted", map[string]string{"a": metricsText(45, 4, map[string]float64{"0": 45, "45009": 2}), "b": metricsText(30, 0, map[string]float64{"0": 30})}, 35 + 19 + 30, map[string]float64{"0": 84, "45009": 2}, 2},
		// a restarts without leaving the list (a restart wxload did not
		// see): its counters went down.
		{"a restarted unseen", map[string]string{"a": metricsText(1, 0, map[string]float64{"0": 1}), "b": metricsText(33, 0, map[string]float64{"0": 33})}, 35 + 1 + 19 + 33, map[string]float64{"0": 88, "45009": 2}, 2},
	}
	var prevRetries float64
	for i, st := range steps {
		f.set(st.texts)
		var m scrape
		if i == 0 {
			m = s.baseline(ctx)
		} else {
			m = s.scrapeAll(ctx)
		}
		assert.Equal(t, st.sent, m.figures.Sent, st.name)
		if st.codes != nil {
			assert.Equal(t, st.codes, m.figures.AttemptsByCode, st.name)
		}
		assert.Equal(t, st.up, m.up, st.name)
		assert.Equal(t, 3.0, m.queueDepth, st.name)
		assert.GreaterOrEqual(t, m.figures.Retries, prevRetries, "%s: a cumulative figure went down", st.name)
		prevRetries = m.figures.Retries
	}
	final := s.scrapeAll(ctx).figures
	assert.Equal(t, 2, final.InstancesSeenUp)
	assert.Equal(t, 2, final.InstanceRestarts)
	assert.Equal(t, 3.0, final.Retries, "a's 3 retries of the run before its restart are kept")
	assert.Zero(t, final.ScrapeFailures)
}

// TestSamplerInstanceStartedDuringTheRun: an instance first seen after the
// baseline counts from zero.
func TestSamplerInstanceStartedDuringTheRun(t *testing.T) {
	f := newFakeInstances(t, "a", "b")
	s := &sampler{urls: f.urls}
	f.set(map[string]string{"a": metricsText(100, 0, nil)})
	s.baseline(t.Context())
	f.set(map[string]string{"a": metricsText(110, 0, nil), "b": metricsText(4, 0, nil)})
	assert.Equal(t, 14.0, s.scrapeAll(t.Context()).figures.Sent)
}

// TestDrainLine: while draining, the progress line says what the run
// waits for.
func TestDrainLine(t *testing.T) {
	for _, tc := range []struct {
		d    drainState
		want string
	}{
		{drainState{elapsed: 2 * time.Second, accepted: 500, delivered: 497, sends: 3, queue: 3}, "[drain   2.0s] delivered 497 of 500 | waiting for 3 sends | queue 3"},
		{drainState{elapsed: 1500 * time.Millisecond, accepted: 500, delivered: 499, sends: 1, queue: 1}, "[drain   1.5s] delivered 499 of 500 | waiting for 1 send | queue 1"},
		{drainState{elapsed: 4 * time.Second, accepted: 500, delivered: 500, reports: 1}, "[drain   4.0s] delivered 500 of 500 | waiting for 1 delivery report | queue 0"},
		{drainState{elapsed: 4 * time.Second, accepted: 500, delivered: 498, sends: 2, reports: 7}, "[drain   4.0s] delivered 498 of 500 | waiting for 2 sends and 7 delivery reports | queue 0"},
		{drainState{accepted: 500, delivered: 500}, "[drain   0.0s] delivered 500 of 500 | nothing left to wait for | queue 0"},
	} {
		assert.Equal(t, tc.want, drainLine(tc.d))
	}
}

// TestTimelineLines: each timeline action is announced as it starts, and
// again when it failed or took a while.
func TestTimelineLines(t *testing.T) {
	one := 1
	rule := scenarios.Rule{Name: "quota"}
	require.NoError(t, json.Unmarshal([]byte(`{"endpoint":"template_send","errcode":45009}`), &rule.Rule))
	apps := map[string]mockwx.App{"shop": {AppID: "wx1"}}
	for _, tc := range []struct {
		a    scenarios.Action
		want string
	}{
		{scenarios.Action{KillInstance: &one}, "[ 8.0s] timeline: instance 1 killed"},
		{scenarios.Action{StartInstance: &one}, "[ 8.0s] timeline: instance 1 started"},
		{scenarios.Action{AddRule: &rule}, "[ 8.0s] timeline: rule quota added: template_send errcode 45009"},
		{scenarios.Action{RemoveRule: "quota"}, "[ 8.0s] timeline: rule quota removed"},
		{scenarios.Action{ClearRules: true}, "[ 8.0s] timeline: every fault rule removed"},
		{scenarios.Action{ExpireTokens: &scenarios.ExpireTokens{App: "shop"}}, "[ 8.0s] timeline: access tokens of app shop expired"},
		{scenarios.Action{RestartRedis: &scenarios.RestartRedis{Down: scenarios.Duration(3 * time.Second)}}, "[ 8.0s] timeline: Redis stopped, back in 3s"},
	} {
		assert.Equal(t, tc.want, timelineLine(8, describeAction(tc.a, apps)))
	}
	assert.Equal(t, "", timelineEndLine(TimelineEvent{AtSeconds: 8, EndSeconds: 8.01, Action: "kill_instance"}), "a quick action says nothing more")
	assert.Equal(t, "[11.2s] timeline: restart_redis done (3.2s)", timelineEndLine(TimelineEvent{AtSeconds: 8, EndSeconds: 11.2, Action: "restart_redis"}))
	assert.Equal(t, "[ 8.0s] timeline: start_instance FAILED after 0.0s: listen: address in use",
		timelineEndLine(TimelineEvent{AtSeconds: 8, EndSeconds: 8.01, Action: "start_instance", Error: "listen: address in use"}))
}

// TestSeriesCarriesSamplesForward: a second without a metrics sample shows
// the last sample; a second sampled with no instance up shows its own
// figures (the counters of the killed instances are kept), not a carry.
func TestSeriesCarriesSamplesForward(t *testing.T) {
	start := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	b := newSeriesBuilder(start)
	sample := func(sec int, refreshes, retries float64, up int) {
		s := b.at(start.Add(time.Duration(sec)*time.Second + time.Millisecond))
		s.sampled = true
		s.TokenRefreshes, s.Retries, s.InstancesUp = refreshes, retries, up
	}
	b.at(start).Sent = 1 // second 0: no sample yet
	sample(1, 1, 2, 2)
	b.at(start.Add(2 * time.Second)).Sent = 1 // second 2: no sample
	sample(3, 1, 5, 0)                        // every instance down
	b.at(start.Add(4 * time.Second)).Sent = 1
	got := b.build(func(time.Duration) float64 { return 1 })
	var refreshes, retries []float64
	var up []int
	for _, s := range got {
		refreshes, retries, up = append(refreshes, s.TokenRefreshes), append(retries, s.Retries), append(up, s.InstancesUp)
	}
	assert.Equal(t, []float64{0, 1, 1, 1, 1}, refreshes)
	assert.Equal(t, []float64{0, 2, 2, 5, 5}, retries)
	assert.Equal(t, []int{2, 2, 2, 0, 0}, up)
}
