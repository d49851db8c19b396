package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
)

// liveStats feeds the progress line.
type liveStats struct {
	sent, errors, accepted atomic.Int64
	delivered, outstanding atomic.Int64
	queue                  atomic.Int64
	draining               atomic.Bool

	mu     sync.Mutex
	window []time.Duration // latencies since the last progress line
}

func (l *liveStats) observe(d time.Duration) {
	l.mu.Lock()
	if len(l.window) < 100_000 {
		l.window = append(l.window, d)
	}
	l.mu.Unlock()
}

// takeWindow returns p50 and p99 of the latencies since the last call.
func (l *liveStats) takeWindow() (p50, p99 time.Duration, n int) {
	l.mu.Lock()
	w := l.window
	l.window = nil
	l.mu.Unlock()
	if len(w) == 0 {
		return 0, 0, 0
	}
	sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
	return w[len(w)/2], w[min(len(w)-1, len(w)*99/100)], len(w)
}

// progress prints a line a second while the run lasts.
func (r *runner) progress(ctx context.Context, live *liveStats, start time.Time, attackDone <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	dur := r.sc.Load.Duration.D()
	var lastSent int64
	lastAt := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if live.draining.Load() {
				r.status(fmt.Sprintf("[drain %5.1fs] delivered %d | outstanding %d | queue %d",
					now.Sub(start).Seconds()-dur.Seconds(), live.delivered.Load(), live.outstanding.Load(), live.queue.Load()))
				continue
			}
			select {
			case <-attackDone:
				continue
			default:
			}
			sent := live.sent.Load()
			rate := float64(sent-lastSent) / now.Sub(lastAt).Seconds()
			lastSent, lastAt = sent, now
			p50, p99, _ := live.takeWindow()
			el := now.Sub(start)
			r.status(fmt.Sprintf("[%4.0fs/%.0fs] rate %7.1f/s (target %.0f) | accept p50 %s p99 %s | errors %d | accepted %d | queue %d",
				el.Seconds(), dur.Seconds(), rate, r.sc.Load.RateAt(el), fmtDur(p50), fmtDur(p99), live.errors.Load(), live.accepted.Load(), live.queue.Load()))
		}
	}
}

func (r *runner) endProgress() {
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.opts.Interactive && r.lastLine > 0 {
		fmt.Fprintln(r.out)
		r.lastLine = 0
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// selfCheck measures how many requests per second this machine's
// generator completes against a trivial loopback target, with the same
// attacker settings as a run but a closed worker pool, for d.
func selfCheck(ctx context.Context, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	body := []byte(`{"id":"01JSELFCHECK0000000000000","status":"queued"}`)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 1000}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr, Timeout: 5 * time.Second}),
		vegeta.Workers(32), vegeta.MaxWorkers(32), vegeta.MaxBody(1024))
	tgt := vegeta.Target{Method: http.MethodPost, URL: "http://" + ln.Addr().String() + "/v1/messages",
		Body: []byte(`{"touser":"oSelfCheck000000000000000000","template_id":"t","data":{}}`)}
	var ok int
	began := time.Now()
	for res := range atk.Attack(vegeta.NewStaticTargeter(tgt), vegeta.ConstantPacer{}, d, "self-check") {
		if res.Code == http.StatusAccepted {
			ok++
		}
		if ctx.Err() != nil {
			atk.Stop()
		}
	}
	if ok == 0 {
		return 0, fmt.Errorf("no request succeeded against the loopback target")
	}
	return float64(ok) / time.Since(began).Seconds(), nil
}

// scrape is one sample of the instances' metrics.
type scrape struct {
	queueDepth, tokenRefreshes, retries float64
	up                                  int
	figures                             ServiceFigures
}

// sampler reads every live instance's /metrics once a second.
type sampler struct {
	urls     func() []string
	hc       http.Client
	maxDepth float64
	failures int
}

func (s *sampler) loop(ctx context.Context, fn func(scrape)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m := s.scrapeAll(ctx)
			s.maxDepth = max(s.maxDepth, m.queueDepth)
			fn(m)
		}
	}
}

func (s *sampler) scrapeAll(ctx context.Context) scrape {
	var out scrape
	out.figures.AttemptsByCode = map[string]float64{}
	s.hc.Timeout = 2 * time.Second
	for _, u := range s.urls() {
		fams, err := s.scrapeOne(ctx, u)
		if err != nil {
			s.failures++
			continue
		}
		out.up++
		f := &out.figures
		sum := func(name string) float64 { return sumFamily(fams[name], nil) }
		// The queue is shared: every instance reports the same depth.
		out.queueDepth = max(out.queueDepth, sum("wxpush_queue_depth"))
		out.tokenRefreshes += sum("wxpush_token_refreshes_total")
		out.retries += sum("wxpush_retries_total")
		f.Accepted += sum("wxpush_messages_accepted_total")
		f.Replayed += sum("wxpush_messages_replayed_total")
		f.Sent += sum("wxpush_messages_sent_total")
		f.Failed += sum("wxpush_messages_failed_total")
		f.Retries += sum("wxpush_retries_total")
		f.Reclaimed += sum("wxpush_queue_reclaimed_total")
		f.TokenRefreshes += sum("wxpush_token_refreshes_total")
		f.RedisErrors += sum("wxpush_redis_errors_total")
		if fam := fams["wxpush_send_attempts_total"]; fam != nil {
			for _, m := range fam.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "errcode" {
						f.AttemptsByCode[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	out.figures.InstancesSeenUp = out.up
	return out
}

func (s *sampler) scrapeOne(ctx context.Context, base string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", base, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func sumFamily(f *dto.MetricFamily, match func(*dto.Metric) bool) float64 {
	if f == nil {
		return 0
	}
	var v float64
	for _, m := range f.GetMetric() {
		if match != nil && !match(m) {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v
}

// timeline runs the scenario's actions at their times.
type timeline struct {
	stack Stack
	start time.Time
	apps  map[string]mockwx.App

	mu      sync.Mutex
	ran     []TimelineEvent
	ruleIDs map[string]string
}

func (t *timeline) run(ctx context.Context, actions []scenarios.Action) {
	t.ruleIDs = map[string]string{}
	for _, a := range actions {
		wait := time.Until(t.start.Add(a.At.D()))
		if wait > 0 {
			sleepCtx(ctx, wait)
		}
		if ctx.Err() != nil {
			return
		}
		ev := TimelineEvent{AtSeconds: time.Since(t.start).Seconds(), Action: a.Kind()}
		detail, err := t.do(ctx, a)
		ev.Detail = detail
		if err != nil {
			ev.Error = err.Error()
		}
		ev.EndSeconds = time.Since(t.start).Seconds()
		t.mu.Lock()
		t.ran = append(t.ran, ev)
		t.mu.Unlock()
	}
}

func (t *timeline) do(ctx context.Context, a scenarios.Action) (string, error) {
	mock := t.stack.Mock()
	switch {
	case a.AddRule != nil:
		id, err := mock.AddFault(ctx, a.AddRule.Rule)
		if err == nil && a.AddRule.Name != "" {
			t.ruleIDs[a.AddRule.Name] = id
		}
		return fmt.Sprintf("rule %s: %s", ruleName(*a.AddRule), describeRule(a.AddRule.Rule)), err
	case a.RemoveRule != "":
		id, ok := t.ruleIDs[a.RemoveRule]
		if !ok {
			return "rule " + a.RemoveRule, fmt.Errorf("rule %q was never added", a.RemoveRule)
		}
		return "rule " + a.RemoveRule, mock.DeleteFault(ctx, id)
	case a.ClearRules:
		return "all rules", mock.ClearFaults(ctx)
	case a.ExpireTokens != nil:
		appid := ""
		name := a.ExpireTokens.App
		if name != "" && name != "*" {
			appid = t.apps[name].AppID
		}
		n, err := mock.ExpireTokens(ctx, appid)
		return fmt.Sprintf("%d tokens of %s", n, map[bool]string{true: "every app", false: name}[appid == ""]), err
	case a.RestartRedis != nil:
		return fmt.Sprintf("down for %s", a.RestartRedis.Down), t.stack.RestartRedis(ctx, a.RestartRedis.Down.D())
	case a.KillInstance != nil:
		return fmt.Sprintf("instance %d", *a.KillInstance), t.stack.KillInstance(*a.KillInstance)
	case a.StartInstance != nil:
		return fmt.Sprintf("instance %d", *a.StartInstance), t.stack.StartInstance(ctx, *a.StartInstance)
	}
	return "", fmt.Errorf("no action")
}

func (t *timeline) events() []TimelineEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]TimelineEvent(nil), t.ran...)
}

func ruleName(r scenarios.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return string(r.Endpoint)
}

// describeRule says what a rule does in a few words.
func describeRule(r mockwx.Rule) string {
	var parts []string
	parts = append(parts, string(r.Endpoint))
	// The typed action, whichever form the rule was written in.
	if a := r.TypedAction(); a != nil {
		switch k := a.Kind.(type) {
		case *mockwx.ErrCodeAction:
			parts = append(parts, fmt.Sprintf("errcode %d", k.ErrCode))
		case *mockwx.HTTPStatusAction:
			parts = append(parts, fmt.Sprintf("HTTP %d", k.HTTPStatus))
		case *mockwx.FaultAction:
			parts = append(parts, string(k.Fault))
		case *mockwx.DeliveryStatusAction:
			parts = append(parts, "delivery "+k.DeliveryStatus)
		case *mockwx.LatencyAction:
			parts = append(parts, "latency")
		}
	}
	if r.Latency != nil {
		parts = append(parts, "latency")
	}
	if r.Probability != nil {
		parts = append(parts, fmt.Sprintf("p=%.2f", *r.Probability))
	}
	if r.Match.AppID != "" {
		parts = append(parts, "appid "+r.Match.AppID)
	}
	return strings.Join(parts, " ")
}

// bands are the intervals during which rules and actions were in effect.
func bands(sc scenarios.Scenario, events []TimelineEvent, end float64) []Band {
	var out []Band
	ruleBand := func(r scenarios.Rule, from float64) Band {
		b := Band{Name: ruleName(r) + ": " + describeRule(r.Rule), Kind: "rule", Start: from + float64(r.AfterMS)/1000, End: end}
		if r.ForMS > 0 {
			b.End = min(end, b.Start+float64(r.ForMS)/1000)
		}
		return b
	}
	for _, r := range sc.Mock.Rules {
		out = append(out, ruleBand(r, 0))
	}
	open := map[string]int{} // rule name -> band index
	kills := map[int]int{}
	for i, ev := range events {
		a := sc.Mock.Timeline[min(i, len(sc.Mock.Timeline)-1)]
		switch {
		case a.AddRule != nil:
			out = append(out, ruleBand(*a.AddRule, ev.AtSeconds))
			if a.AddRule.Name != "" {
				open[a.AddRule.Name] = len(out) - 1
			}
		case a.RemoveRule != "":
			if j, ok := open[a.RemoveRule]; ok && out[j].End > ev.AtSeconds {
				out[j].End = ev.AtSeconds
			}
		case a.RestartRedis != nil:
			out = append(out, Band{Name: "Redis down", Kind: "redis", Start: ev.AtSeconds, End: ev.EndSeconds})
		case a.KillInstance != nil:
			out = append(out, Band{Name: fmt.Sprintf("instance %d down", *a.KillInstance), Kind: "instance", Start: ev.AtSeconds, End: end})
			kills[*a.KillInstance] = len(out) - 1
		case a.StartInstance != nil:
			if j, ok := kills[*a.StartInstance]; ok {
				out[j].End = ev.EndSeconds
			}
		case a.ExpireTokens != nil:
			out = append(out, Band{Name: "tokens expired", Kind: "tokens", Start: ev.AtSeconds, End: ev.AtSeconds})
		}
	}
	if out == nil {
		out = []Band{}
	}
	return out
}

func e2eSpectrum(a *accountant) []SpectrumPoint {
	h := newHist()
	for _, t := range a.byMarker {
		if t.deliveries > 0 && !t.firstAt.IsZero() {
			_ = h.RecordValue(max(t.firstAt.Sub(t.acceptedAt).Microseconds(), 1))
		}
	}
	return spectrum(h)
}
