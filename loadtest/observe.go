package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
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
	unconfirmed            atomic.Int64 // delivered, the delivery report not applied
	queue                  atomic.Int64
	draining               atomic.Bool
	drainFrom              atomic.Int64 // the load's end, in Unix nanoseconds

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

// startDrain marks the end of the load.
func (l *liveStats) startDrain(at time.Time) {
	l.drainFrom.Store(at.UnixNano())
	l.outstanding.Store(l.accepted.Load()) // until the ledger is read
	l.draining.Store(true)
}

func (l *liveStats) attackEnd() time.Time { return time.Unix(0, l.drainFrom.Load()) }

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
				r.status(drainLine(drainState{elapsed: now.Sub(live.attackEnd()), accepted: live.accepted.Load(),
					delivered: live.delivered.Load(), sends: live.outstanding.Load(), reports: live.unconfirmed.Load(), queue: live.queue.Load()}))
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

// trivialBody is the trivial loopback server's answer.
var trivialBody = []byte(`{"id":"01JSELFCHECK0000000000000","status":"queued"}`)

// startTrivial starts a loopback server that answers every request 202
// with a small body, for the self-check and the probe. Close it with stop.
func startTrivial() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(trivialBody)
	}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close(); <-done }, nil
}

// selfCheck measures how many requests per second this machine's
// generator completes against a trivial loopback target, with the same
// attacker settings as a run but a closed worker pool, for d.
func selfCheck(ctx context.Context, d time.Duration) (float64, error) {
	base, stop, err := startTrivial()
	if err != nil {
		return 0, err
	}
	defer stop()
	tr := &http.Transport{MaxIdleConnsPerHost: 1000}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr, Timeout: 5 * time.Second}),
		vegeta.Workers(32), vegeta.MaxWorkers(32), vegeta.MaxBody(1024))
	tgt := vegeta.Target{Method: http.MethodPost, URL: base + "/v1/messages",
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

// probeEvery is the probe's period.
const probeEvery = 50 * time.Millisecond

// runProbe measures the machine while ctx lasts: every probeEvery, one
// trivial request to a loopback server in this process, its latency
// recorded in microseconds. On an idle machine it takes about a tenth of
// a millisecond; what it takes beyond that is waiting for a CPU.
func runProbe(ctx context.Context) (*hdrhistogram.Histogram, error) {
	h := newHist()
	base, stop, err := startTrivial()
	if err != nil {
		return h, err
	}
	defer stop()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return h, nil
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/probe", nil)
		if err != nil {
			return h, err
		}
		began := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			continue // the run is ending, or the machine refused a socket: no figure
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = h.RecordValue(time.Since(began).Microseconds())
	}
}

// scrape is one sample of the instances' metrics.
type scrape struct {
	queueDepth float64 // the shared queue's depth (every instance reports it)
	up         int     // instances that answered this round
	figures    ServiceFigures
}

// sampler reads every live instance's /metrics once a second and keeps
// per-run deltas of their counters. It is safe for concurrent use: the
// sampling loop and the timeline (a scrape before a kill) both scrape, and
// their fetches may end in any order: each scrape is numbered when it
// starts, and a result older than the one already applied for an instance
// is discarded.
type sampler struct {
	urls func() []string
	hc   http.Client

	mu       sync.Mutex
	seq      uint64 // the last scrape started
	counters counterTracker
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
			fn(s.scrapeAll(ctx))
		}
	}
}

// baseline takes the scrape the run's deltas start from: the instances
// up now count from their current values, any other from zero.
func (s *sampler) baseline(ctx context.Context) scrape {
	m := s.scrapeAll(ctx)
	s.mu.Lock()
	s.counters.started = true
	s.mu.Unlock()
	return m
}

// scrapeAll scrapes every instance up and returns the run's figures so
// far.
func (s *sampler) scrapeAll(ctx context.Context) scrape {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	urls := s.urls()
	type result struct {
		vals  map[string]float64
		depth float64
		err   error
	}
	res := make([]result, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fams, err := s.scrapeOne(ctx, u)
			if err != nil {
				res[i].err = err
				return
			}
			res[i].vals, res[i].depth = counterValues(fams), sumFamily(fams["wxpush_queue_depth"], nil)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out scrape
	s.counters.present(urls, seq)
	for i, u := range urls {
		if res[i].err != nil {
			s.failures++
			continue
		}
		out.up++
		out.queueDepth = max(out.queueDepth, res[i].depth)
		s.counters.observe(u, res[i].vals, seq)
	}
	s.maxDepth = max(s.maxDepth, out.queueDepth)
	out.figures = s.counters.figures()
	out.figures.QueueDepthMax, out.figures.ScrapeFailures = s.maxDepth, s.failures
	return out
}

func (s *sampler) scrapeOne(ctx context.Context, base string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
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

// The counters a run reports, by the key counterValues gives them.
var serviceCounters = map[string]string{
	"accepted":        "wxpush_messages_accepted_total",
	"replayed":        "wxpush_messages_replayed_total",
	"sent":            "wxpush_messages_sent_total",
	"failed":          "wxpush_messages_failed_total",
	"retries":         "wxpush_retries_total",
	"reclaimed":       "wxpush_queue_reclaimed_total",
	"token_refreshes": "wxpush_token_refreshes_total",
	"redis_errors":    "wxpush_redis_errors_total",
}

// attemptsPrefix prefixes the keys of wxpush_send_attempts_total by
// errcode.
const attemptsPrefix = "attempts:"

// counterValues flattens one instance's metrics into the counters a run
// reports (summed over labels), and the send attempts by errcode.
func counterValues(fams map[string]*dto.MetricFamily) map[string]float64 {
	vals := map[string]float64{}
	for key, name := range serviceCounters {
		if f := fams[name]; f != nil {
			vals[key] = sumFamily(f, nil)
		}
	}
	if fam := fams["wxpush_send_attempts_total"]; fam != nil {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "errcode" {
					vals[attemptsPrefix+l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return vals
}

// counterTracker turns the instances' scrapes into per-run deltas that
// survive kills and restarts, as Prometheus' increase() does: each
// instance counts from its baseline to its last scrape; a counter that
// goes down (or an instance that left the list of those up and came back)
// is a new process counting from zero, and what the old one counted is
// kept.
type counterTracker struct {
	// started: the baseline was taken; an instance first seen later
	// started during the run and counts from zero.
	started  bool
	insts    map[string]*instCounters
	restarts int
}

type instCounters struct {
	base, last map[string]float64 // the current process's baseline and last scrape
	earlier    map[string]float64 // what earlier processes at this URL counted
	gone       bool               // it left the list of instances up
	// seq numbers the latest scrape applied: one that started earlier is
	// stale (its lower values are not a restart) and is discarded.
	seq uint64
}

// present marks the instances not in urls, the list scrape seq started
// from, as gone: the next scrape of one of them is a new process. A list
// older than an instance's last applied scrape says nothing of it.
func (c *counterTracker) present(urls []string, seq uint64) {
	up := make(map[string]bool, len(urls))
	for _, u := range urls {
		up[u] = true
	}
	for u, in := range c.insts {
		if !up[u] && seq > in.seq {
			in.gone, in.seq = true, seq
		}
	}
}

// observe applies scrape seq of the instance at url, unless a later
// scrape of it was applied already.
func (c *counterTracker) observe(url string, vals map[string]float64, seq uint64) {
	if c.insts == nil {
		c.insts = map[string]*instCounters{}
	}
	in := c.insts[url]
	if in != nil && seq < in.seq {
		return
	}
	switch {
	case in == nil:
		in = &instCounters{base: map[string]float64{}, earlier: map[string]float64{}}
		if !c.started {
			for k, v := range vals {
				in.base[k] = v
			}
		}
		c.insts[url] = in
	case in.gone || wentDown(in.last, vals):
		for k, v := range in.last {
			in.earlier[k] += v - in.base[k]
		}
		in.base = map[string]float64{}
		c.restarts++
	}
	in.gone = false
	in.last, in.seq = vals, seq
}

// wentDown reports whether any counter of last is higher than in vals (a
// series that disappeared counts as zero).
func wentDown(last, vals map[string]float64) bool {
	for k, v := range last {
		if vals[k] < v {
			return true
		}
	}
	return false
}

// total is counter k's increase over the run, summed over instances.
func (c *counterTracker) total(k string) float64 {
	var v float64
	for _, in := range c.insts {
		v += in.earlier[k] + in.last[k] - in.base[k]
	}
	return v
}

// figures are the run's service figures so far.
func (c *counterTracker) figures() ServiceFigures {
	f := ServiceFigures{
		Accepted: c.total("accepted"), Replayed: c.total("replayed"), Sent: c.total("sent"), Failed: c.total("failed"),
		Retries: c.total("retries"), Reclaimed: c.total("reclaimed"), TokenRefreshes: c.total("token_refreshes"),
		RedisErrors: c.total("redis_errors"), AttemptsByCode: map[string]float64{},
		InstancesSeenUp: len(c.insts), InstanceRestarts: c.restarts,
	}
	codes := map[string]bool{}
	for _, in := range c.insts {
		for _, m := range []map[string]float64{in.last, in.earlier} {
			for k := range m {
				if code, ok := strings.CutPrefix(k, attemptsPrefix); ok {
					codes[code] = true
				}
			}
		}
	}
	for code := range codes {
		if v := c.total(attemptsPrefix + code); v != 0 {
			f.AttemptsByCode[code] = v
		}
	}
	return f
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
	// before, when set, runs just before each action: the run scrapes the
	// instances' metrics before a kill, so that the killed instance's last
	// counters are kept. announce, when set, is told of each action as it
	// starts and, when it took a while or failed, as it ends.
	before   func(ctx context.Context, a scenarios.Action)
	announce func(line string)

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
		if t.announce != nil {
			t.announce(timelineLine(ev.AtSeconds, describeAction(a, t.apps)))
		}
		if t.before != nil {
			t.before(ctx, a)
		}
		detail, err := t.do(ctx, a)
		ev.Detail = detail
		if err != nil {
			ev.Error = err.Error()
		}
		ev.EndSeconds = time.Since(t.start).Seconds()
		if t.announce != nil {
			if line := timelineEndLine(ev); line != "" {
				t.announce(line)
			}
		}
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

// describeAction says what a timeline action is about to do.
func describeAction(a scenarios.Action, apps map[string]mockwx.App) string {
	switch {
	case a.AddRule != nil:
		return fmt.Sprintf("rule %s added: %s", ruleName(*a.AddRule), describeRule(a.AddRule.Rule))
	case a.RemoveRule != "":
		return "rule " + a.RemoveRule + " removed"
	case a.ClearRules:
		return "every fault rule removed"
	case a.ExpireTokens != nil:
		name := a.ExpireTokens.App
		if name == "" || name == "*" {
			return "access tokens of every app expired"
		}
		return "access tokens of app " + name + " expired"
	case a.RestartRedis != nil:
		return fmt.Sprintf("Redis stopped, back in %s", a.RestartRedis.Down)
	case a.KillInstance != nil:
		return fmt.Sprintf("instance %d killed", *a.KillInstance)
	case a.StartInstance != nil:
		return fmt.Sprintf("instance %d started", *a.StartInstance)
	}
	return a.Kind()
}

// timelineLine is the progress line announcing a timeline action at
// seconds since the start of the load.
func timelineLine(at float64, what string) string {
	return fmt.Sprintf("[%4.1fs] timeline: %s", at, what)
}

// timelineEndLine is the line for an action's end: its error, or its
// duration when it took a second or more; "" when there is nothing to
// add.
func timelineEndLine(ev TimelineEvent) string {
	took := ev.EndSeconds - ev.AtSeconds
	switch {
	case ev.Error != "":
		return timelineLine(ev.EndSeconds, fmt.Sprintf("%s FAILED after %.1fs: %s", ev.Action, took, ev.Error))
	case took >= 1:
		return timelineLine(ev.EndSeconds, fmt.Sprintf("%s done (%.1fs)", ev.Action, took))
	}
	return ""
}

// drainState is what the drain has and waits for.
type drainState struct {
	elapsed   time.Duration // since the end of the load
	accepted  int64         // messages acknowledged
	delivered int64         // of them, delivered
	sends     int64         // accepted, neither delivered nor failed yet
	reports   int64         // delivered, whose delivery report is not applied yet
	queue     int64         // the queue's depth
}

// drainLine is the progress line while the run drains: what it has, and
// what it still waits for.
func drainLine(d drainState) string {
	wait := "nothing left to wait for"
	switch {
	case d.sends > 0 && d.reports > 0:
		wait = fmt.Sprintf("waiting for %s and %s", count(d.sends, "send"), count(d.reports, "delivery report"))
	case d.sends > 0:
		wait = "waiting for " + count(d.sends, "send")
	case d.reports > 0:
		wait = "waiting for " + count(d.reports, "delivery report")
	}
	return fmt.Sprintf("[drain %5.1fs] delivered %d of %d | %s | queue %d", d.elapsed.Seconds(), d.delivered, d.accepted, wait, d.queue)
}

// count is "1 send", "3 sends".
func count(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
