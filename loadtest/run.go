package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/goccy/go-yaml"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// ErrUsage marks a scenario or options that cannot run (exit status 2).
var ErrUsage = errors.New("usage")

// Options are how a scenario runs, as opposed to what it does.
type Options struct {
	// OutDir is the run directory (created; default runs/NAME-TIMESTAMP).
	OutDir string
	// Services, when set, are the base URLs of a running deployment
	// (remote mode); MockURL, MockToken and APIKey go with them.
	Services  []string
	MockURL   string
	MockToken string
	APIKey    string
	// RedisURL makes the embedded stack use this Redis; RedisAuto (empty)
	// starts a private redis-server when one is installed and miniredis
	// otherwise (or the cluster a scenario's stack.redis asks for);
	// RedisMini and RedisProcess force one of the two, RedisCluster a
	// private Redis Cluster of 3 masters + 3 replicas. A scenario with
	// stack.redis: cluster refuses any value but RedisAuto and
	// RedisCluster.
	RedisURL string
	// ClusterPorts is the loopback port range "LO-HI" of the embedded
	// stack's Redis Cluster nodes (bus ports +10000); "" takes free ports.
	ClusterPorts string
	// Stack is where the stack runs when Services is empty: StackEmbedded
	// (the default, in this process) or StackContainers (Docker; the
	// binary must link package internal/harness/containers, as wxload does).
	Stack string
	// Progress receives the live progress lines and the final summary;
	// nil is quiet.
	Progress io.Writer
	// Interactive redraws the progress line in place (a terminal).
	Interactive bool
	// NoSelfCheck skips the generator self-check.
	NoSelfCheck bool
	// StatusCheckLimit caps how many messages' statuses are read after the
	// drain to count confirmed deliveries (default 50,000; undelivered
	// messages are always checked).
	StatusCheckLimit int
	// Render writes index.html for a run directory; nil writes a plain
	// text report. Package reports provides the real one.
	Render func(dir string) error
	// SelfCheckHistory is a file that keeps this machine's recent
	// self-check rates, so that a run can tell a busy machine from its
	// usual self (generator.usual_self_check_rate); "" keeps no history.
	SelfCheckHistory string
	// Shard, when its Count is set, runs one share of the scenario
	// (remote mode only; see Shard): its run directory also holds
	// messages.jsonl and shard.json for wxload merge. Only shard 0 runs
	// the timeline and the users, which act on the shared deployment.
	Shard Shard
}

// Result is a finished run.
type Result struct {
	Dir     string
	Summary *Summary
}

// Run runs a scenario end to end and writes its run directory. The error
// is about the run itself (the stack would not start, the directory could
// not be written); a run whose expectations fail returns a Summary with
// Passed false and no error.
func Run(ctx context.Context, sc scenarios.Scenario, opts Options) (*Result, error) {
	sc = sc.WithDefaults()
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := CheckExpectations(sc.Expect); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := checkStack(sc, opts); err != nil {
		return nil, err
	}
	remoteMode := len(opts.Services) > 0
	if err := checkShard(opts.Shard, remoteMode); err != nil {
		return nil, err
	}
	if remoteMode {
		if opts.MockURL == "" {
			return nil, fmt.Errorf("%w: --service needs --mock (the mock's URL, for the ledger)", ErrUsage)
		}
		for i, a := range sc.Mock.Timeline {
			if a.RestartRedis != nil || a.KillInstance != nil || a.StartInstance != nil {
				return nil, fmt.Errorf("%w: mock.timeline[%d]: %s is %v", ErrUsage, i, a.Kind(), errRemote)
			}
		}
	}
	if opts.StatusCheckLimit == 0 {
		opts.StatusCheckLimit = 50_000
	}
	if opts.OutDir == "" {
		opts.OutDir = filepath.Join("runs", sc.Name+"-"+time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	r := &runner{sc: sc, opts: opts, out: opts.Progress}
	if r.out == nil {
		r.out = io.Discard
	}
	sum, err := r.run(ctx)
	if err != nil {
		return nil, err
	}
	return &Result{Dir: opts.OutDir, Summary: sum}, nil
}

type runner struct {
	sc    scenarios.Scenario
	opts  Options
	out   io.Writer
	stack Stack
	sum   Summary

	progMu   sync.Mutex
	lastLine int
}

func (r *runner) logf(format string, args ...any) {
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.opts.Interactive && r.lastLine > 0 {
		fmt.Fprint(r.out, "\n")
		r.lastLine = 0
	}
	fmt.Fprintf(r.out, format+"\n", args...)
}

// status prints a progress line: in place on a terminal, else as a line.
func (r *runner) status(line string) {
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.opts.Interactive {
		pad := max(r.lastLine-len(line), 0)
		fmt.Fprintf(r.out, "\r%s%*s", line, pad, "")
		r.lastLine = len(line)
		return
	}
	fmt.Fprintln(r.out, line)
}

func (r *runner) run(ctx context.Context) (*Summary, error) {
	sc, opts := r.sc, r.opts
	s := &r.sum
	s.zeroMaps()
	s.Scenario, s.Description = sc.Name, sc.Description
	s.Run.Seed, s.Run.Version, s.Run.GoVersion, s.Run.Cores = sc.Seed, version.Version, runtime.Version(), runtime.NumCPU()
	s.Run.Instances = sc.Stack.Instances
	sh := opts.Shard.share()
	s.Generator.PeakRate = sc.Load.PeakRate() / float64(sh.n())
	s.Generator.TargetRate = sc.Load.TotalHits() / sc.Load.Duration.D().Seconds()
	if opts.Shard.sharded() {
		s.Generator.TargetRate = float64(sh.requests(sc.Load)) / sc.Load.Duration.D().Seconds()
	}
	// Shard 0 alone acts on the shared deployment: the timeline programs
	// the mock, the users push to it.
	actor := !opts.Shard.sharded() || opts.Shard.Index == 0
	if src, err := yaml.Marshal(sc); err == nil {
		_ = os.WriteFile(filepath.Join(opts.OutDir, "scenario.yaml"), src, 0o644)
	}

	if !opts.NoSelfCheck {
		rate, err := selfCheck(ctx, 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("generator self-check: %w", err)
		}
		s.Generator.SelfCheckRate = rate
		if opts.SelfCheckHistory != "" {
			usual, err := recordSelfCheck(opts.SelfCheckHistory, rate)
			if err != nil {
				s.Run.Warnings = append(s.Run.Warnings, "self-check history: "+err.Error())
			}
			s.Generator.UsualSelfCheckRate = usual
			if usual > 0 {
				s.Generator.SelfCheckRatio = rate / usual
			}
		}
		r.logf("generator self-check: this machine generates up to %.0f requests/s against a trivial loopback target (scenario peak %.0f/s)", rate, s.Generator.PeakRate)
	}

	r.logf("starting the stack for %q ...", sc.Name)
	var err error
	var recv *eventReceiver // the event webhook's receiver (embedded stack with load.users)
	if len(opts.Services) > 0 {
		r.stack, err = connectRemote(ctx, sc, opts.Services, opts.MockURL, opts.MockToken, opts.APIKey)
	} else {
		ledgerData := int(math.Min(sc.Load.TotalHits()*float64(max(sc.Load.Batch.Size, 1))*1.2+100_000, 5_000_000))
		var hook *eventHook
		if sc.Load.Users != nil {
			// wxload receives the users' pushes itself, to account for
			// every one end to end.
			secret := runTag(sc.Seed) + "-event-webhook-secret"
			if recv, err = startEventReceiver(secret); err != nil {
				return nil, fmt.Errorf("event webhook receiver: %w", err)
			}
			defer recv.close()
			hook = &eventHook{url: recv.url, secret: secret, handler: recv}
		}
		r.stack, err = startStack(ctx, opts.Stack, sc, redisChoice{opts.RedisURL, opts.ClusterPorts}, filepath.Join(opts.OutDir, "logs"), ledgerData, hook, r.logf, fixedStack{})
	}
	if err != nil {
		return nil, err
	}
	defer r.stack.Close()
	s.Run.Mode, s.Run.Redis = r.stack.Describe()
	if s.Run.Mode == "remote" && (sc.Stack.Redis != "" || sc.Stack.Partitions != 0) {
		// As every stack setting but instances: the deployment's business.
		note := "stack.redis and stack.partitions describe the embedded stack: the remote deployment runs on its own Redis with its own partition count"
		r.logf("note: %s", note)
		s.Run.Warnings = append(s.Run.Warnings, note)
	}
	if s.Run.Mode != "remote" {
		r.logf("stack: %d wxpushd instance(s) %v, mockwx, Redis: %s; logs in %s", sc.Stack.Instances, r.stack.ServiceURLs(), s.Run.Redis, filepath.Join(opts.OutDir, "logs"))
	}
	startStats, err := r.stack.Mock().Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("mock stats: %w", err)
	}
	// The ledger's seqs run 1, 2, 3... so its total is its last seq: the
	// run reads only what comes after it (a shared mock may hold millions).
	startSeq := startStats.Ledger.Total

	tag := runTag(sc.Seed)
	if opts.Shard.sharded() {
		tag = shardTag(opts.Shard.RunID, opts.Shard.Index)
		s.Run.Shard = ShardInfo{RunID: opts.Shard.RunID, Index: opts.Shard.Index, Count: opts.Shard.Count, Marker: tag, LedgerFrom: startSeq}
		r.logf("shard %s of run %s: markers %s-N; %d of the scenario's %.0f requests", opts.Shard, opts.Shard.RunID, tag, sh.requests(sc.Load), ceilHits(sc.Load.TotalHits()))
		if !actor && (len(sc.Mock.Timeline) > 0 || sc.Load.Users != nil) {
			r.logf("the timeline and the users run in shard 0 only")
		}
	}
	gen, err := newGenerator(sc, tag, uint64(opts.Shard.Index), r.stack.APIKey(), r.stack.MockApps(), r.stack.ServiceURLs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	resultsFile, err := os.Create(filepath.Join(opts.OutDir, "results.bin"))
	if err != nil {
		return nil, err
	}
	defer resultsFile.Close()
	enc := vegeta.NewEncoder(resultsFile)

	start := time.Now()
	s.Run.Started = start
	acct := newAccountant(tag, r.stack.MockApps(), start)
	acct.startSeq, acct.lastSeq = startSeq, startSeq
	series := newSeriesBuilder(start)
	var seriesMu sync.Mutex // series is written by the result loop and the sampler
	live := &liveStats{}

	// Background: the timeline, the metrics sampler, the progress line.
	bgCtx, stopBG := context.WithCancel(ctx)
	defer stopBG()
	var bg sync.WaitGroup
	// The counters count from here: a scrape before the load.
	sampler := &sampler{urls: r.stack.ServiceURLs}
	sampler.baseline(ctx)
	tl := &timeline{stack: r.stack, start: start, apps: r.stack.MockApps(),
		announce: func(line string) { r.logf("%s", line) },
		before: func(ctx context.Context, a scenarios.Action) {
			if a.KillInstance != nil {
				sampler.scrapeAll(ctx) // the killed instance's last counters
			}
		}}
	if actor {
		bg.Add(1)
		go func() { defer bg.Done(); tl.run(bgCtx, sc.Mock.Timeline) }()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		sampler.loop(bgCtx, func(m scrape) {
			seriesMu.Lock()
			sec := series.at(time.Now())
			sec.sampled = true
			sec.QueueDepth, sec.TokenRefreshes, sec.Retries, sec.InstancesUp = m.queueDepth, m.figures.TokenRefreshes, m.figures.Retries, m.up
			seriesMu.Unlock()
			live.queue.Store(int64(m.queueDepth))
		})
	}()
	// The probe measures the machine while the load runs.
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probeDone := make(chan *hdrhistogram.Histogram, 1)
	go func() {
		h, err := runProbe(probeCtx)
		if err != nil {
			r.logf("machine probe: %v", err)
		}
		probeDone <- h
	}()
	var users *userSim
	var unfollowSends []unfollowSend
	usersCtx, stopUsers := context.WithCancel(ctx)
	defer stopUsers()
	if sc.Load.Users != nil && actor {
		users = newUserSim(sc, r.stack.Mock(), r.stack.MockApps())
		r.logf("users: %.0f events/s (%s)%s", sc.Load.Users.Rate, describeMix(sc.Load.Users.EffectiveMix()), describeUnfollow(sc.Load.Users.Unfollow, users.unfollowN))
		bg.Add(1)
		go func() { defer bg.Done(); users.run(usersCtx, start) }()
	}
	attackDone := make(chan struct{})
	bg.Add(1)
	go func() {
		defer bg.Done()
		r.progress(bgCtx, live, start, attackDone)
	}()

	// The attack: open model, no worker cap.
	tr := &http.Transport{
		MaxIdleConnsPerHost: 10_000,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: echoTransport{tr}, Timeout: sc.Load.Timeout.D()}),
		vegeta.MaxBody(256<<10),
		vegeta.Workers(uint64(max(16, runtime.NumCPU()*8))),
	)
	r.logf("attack: %s for %s (%.0f requests), recipients %d, duplicates %.0f%%, batches %.0f%%",
		describePacer(sc.Load)+map[bool]string{true: fmt.Sprintf(" / %d shards", sh.n()), false: ""}[opts.Shard.sharded()], sc.Load.Duration, float64(sh.requests(sc.Load)), sc.Load.Recipients, sc.Load.DuplicateRatio*100, sc.Load.Batch.Share*100)
	var vm vegeta.Metrics
	acceptHist, lagHist := newHist(), newHist()
	attackStart := time.Now()
	for res := range atk.Attack(gen.Targeter(), pacer{load: sc.Load, share: sh}, sc.Load.Duration.D(), sc.Name) {
		vm.Add(res)
		_ = acceptHist.RecordValue(max(res.Latency.Microseconds(), 1))
		due := attackStart.Add(sh.hitTime(sc.Load, res.Seq))
		_ = lagHist.RecordValue(max(res.Timestamp.Sub(due).Microseconds(), 0))
		n, _ := strconv.ParseUint(res.Headers.Get(reqHeader), 10, 64)
		req := gen.take(n)
		seriesMu.Lock()
		sec := series.at(res.Timestamp)
		sec.Sent++
		sec.latency(max(res.Latency.Microseconds(), 1))
		r.handle(res, req, due, acct, sec, live)
		seriesMu.Unlock()
		res.Body = nil // the raw results keep the figures, not the bodies
		if err := enc.Encode(res); err != nil {
			return nil, fmt.Errorf("results.bin: %w", err)
		}
	}
	vm.Close()
	stopUsers()
	stopProbe()
	close(attackDone)
	attackEnd := time.Now()
	probeHist := <-probeDone
	s.Generator.ProbeMS = percentiles(probeHist)
	s.Run.DurationSeconds = attackEnd.Sub(start).Seconds()
	fillAccept(&s.Accept, &vm)
	s.Generator.LagMS = percentiles(lagHist)
	s.Generator.AchievedRate = float64(s.Accept.Requests) / sc.Load.Duration.D().Seconds()
	judgeGenerator(&s.Generator)
	if g := s.Generator; g.SelfCheckRate > 0 && g.PeakRate > 0.8*g.SelfCheckRate {
		s.Run.Warnings = append(s.Run.Warnings, fmt.Sprintf("the peak rate %.0f/s is above 80%% of what this machine's generator reached against a trivial target (%.0f/s): the generator may not keep up", g.PeakRate, g.SelfCheckRate))
	}
	live.startDrain(attackEnd)

	// Drain: follow the ledger and the statuses until every accepted
	// message has an outcome (or the drain timeout).
	receipt := func(t *tracked, at time.Time) {
		seriesMu.Lock()
		series.at(at).delivered(at.Sub(t.sentAt).Microseconds())
		seriesMu.Unlock()
	}
	sendCodes := map[string]int64{} // the run's sends by errcode, from the ledger
	entry := func(e mockwx.LedgerEntry) {
		code := strconv.Itoa(e.ErrCode)
		sendCodes[code]++
		seriesMu.Lock()
		series.at(e.ReceivedAt).errcode(code)
		seriesMu.Unlock()
		if users != nil && users.inWave(e.ToUser) {
			unfollowSends = append(unfollowSends, unfollowSend{appid: e.AppID, openid: e.ToUser, at: e.ReceivedAt, errcode: e.ErrCode})
		}
	}
	checked, drained := r.drain(ctx, acct, entry, receipt, live, attackEnd)
	s.Delivery.DrainSeconds = time.Since(attackEnd).Seconds()
	s.Delivery.Drained = drained
	if users != nil {
		names := map[string]string{}
		for name, a := range r.stack.MockApps() {
			names[a.AppID] = name
		}
		r.logf("users: waiting for every push's outcome%s ...", map[bool]string{true: " and its forwarding", false: ""}[recv != nil])
		sctx, cancel := context.WithTimeout(ctx, sc.DrainTimeout.D())
		recs := users.settle(sctx, recv, names)
		cancel()
		users.fill(&s.Events, recs, recv, names, unfollowSends)
	}
	stopBG()
	bg.Wait()
	r.endProgress()

	// Figures from the mock and the service.
	s.Service = sampler.scrapeAll(ctx).figures
	var endStats *mockwx.Stats // nil: the mock did not answer
	if st, err := r.stack.Mock().Stats(ctx); err != nil {
		s.Run.Warnings = append(s.Run.Warnings, "mock stats: "+err.Error())
	} else {
		endStats = &st
		s.Mock = mockDelta(startStats, st)
	}
	s.Mock.SendsByErrcode = sendCodes
	acct.fill(&s.Delivery, checked)
	if n := s.Delivery.ReceiptsBeforeSend; n > 0 {
		s.Run.Warnings = append(s.Run.Warnings, fmt.Sprintf("%d receipts or delivery reports are stamped before their send: the mock's or the service's clock is behind this machine's (left out of the latencies)", n))
	}
	if acct.idConflicts > 0 {
		s.Run.Warnings = append(s.Run.Warnings, fmt.Sprintf("%d repeated requests were answered with a different message id than the original", acct.idConflicts))
	}
	if n := len(acct.unacked); n > 0 {
		s.Run.Warnings = append(s.Run.Warnings, fmt.Sprintf("%d messages reached WeChat although the API's answer never arrived (a lost answer, not a loss)", n))
	}
	if s.Delivery.Unattributed > 0 {
		s.Run.Warnings = append(s.Run.Warnings, fmt.Sprintf("%d ledger entries of this run had their data evicted by the mock (raise its ledger_data_capacity): they cannot be attributed", s.Delivery.Unattributed))
	}
	s.Run.Timeline = tl.events()
	for _, ev := range s.Run.Timeline {
		if ev.Error != "" {
			s.Run.TimelineErrors++
		}
	}
	s.Run.Finished = time.Now()
	s.zeroMaps()
	s.Evaluate(sc.Expect)

	for _, t := range acct.byMarker {
		if t.failed() && !t.updatedAt.IsZero() {
			series.at(t.updatedAt).Failed++
		}
		if !t.confirmedAt.IsZero() {
			series.at(t.confirmedAt).confirmed(t.confirmedAt.Sub(t.sentAt).Microseconds())
		}
	}
	lat := acct.latencies()
	ser := Series{Start: start, Seconds: series.build(func(t time.Duration) float64 { return sh.rateAt(sc.Load, t) }), Bands: bands(sc, s.Run.Timeline, attackEnd.Sub(start).Seconds()),
		AttackEnd: attackEnd.Sub(start).Seconds(), End: time.Since(start).Seconds(),
		Spectrum: spectrum(acceptHist), E2ESpectrum: spectrum(lat.e2e), ConfirmedSpectrum: spectrum(lat.confirmed)}
	hists := runHistograms{Lag: lagHist, Probe: probeHist, Accept: acceptHist, E2E: lat.e2e, Confirmed: lat.confirmed}
	if err := r.write(acct, ser, hists); err != nil {
		return nil, err
	}
	if opts.Shard.sharded() {
		if err := writeShardFiles(opts.OutDir, acct, shardStats{Before: startStats, After: endStats}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// handle processes one vegeta result: what the API acknowledged.
// due is when the request was scheduled to leave.
func (r *runner) handle(res *vegeta.Result, req *request, due time.Time, acct *accountant, sec *secondAcc, live *liveStats) {
	s := &r.sum
	live.sent.Add(1)
	live.observe(res.Latency)
	if res.Error != "" || res.Code < 200 || res.Code >= 300 {
		sec.Errors++
		live.errors.Add(1)
		s.Accept.Errors++
		kind := res.Error
		if res.Code != 0 {
			kind = strconv.Itoa(int(res.Code))
		} else {
			kind = classifyTransport(kind)
		}
		s.Accept.ErrorKinds[kind]++
		return
	}
	sec.OK++
	if req == nil {
		return
	}
	end := res.Timestamp.Add(res.Latency)
	if req.dup {
		s.Accept.DuplicateRequests++
	}
	if req.batch {
		s.Accept.BatchRequests++
		var br service.BatchResponse
		if err := json.Unmarshal(res.Body, &br); err != nil {
			s.Accept.ItemErrors += len(req.items)
			return
		}
		for _, it := range br.Results {
			if it.Index < 0 || it.Index >= len(req.items) || it.ID == "" {
				s.Accept.ItemErrors++
				continue
			}
			if it.Replayed {
				s.Accept.Replayed++
				sec.Replayed++
			}
			before := len(acct.byMarker)
			acct.accept(req.items[it.Index], it.ID, due, end)
			if len(acct.byMarker) > before {
				sec.Accepted++
				live.accepted.Add(1)
			}
		}
		return
	}
	var a service.Accepted
	if err := json.Unmarshal(res.Body, &a); err != nil || a.ID == "" {
		s.Accept.ItemErrors++
		return
	}
	if res.Headers.Get("Idempotent-Replayed") == "true" {
		s.Accept.Replayed++
		sec.Replayed++
	}
	before := len(acct.byMarker)
	acct.accept(req.items[0], a.ID, due, end)
	if len(acct.byMarker) > before {
		sec.Accepted++
		live.accepted.Add(1)
	}
}

func classifyTransport(e string) string {
	switch {
	case e == "":
		return "unknown"
	case containsAny(e, "connection refused"):
		return "connection_refused"
	case containsAny(e, "reset by peer", "EOF", "broken pipe"):
		return "connection_reset"
	case containsAny(e, "timeout", "deadline exceeded"):
		return "timeout"
	default:
		return "transport"
	}
}

// fillAccept fills the accept figures vegeta's metrics give.
func fillAccept(a *Accept, vm *vegeta.Metrics) {
	a.Requests = int(vm.Requests)
	a.Rate = vm.Rate
	a.Throughput = vm.Throughput
	a.SuccessRatio = vm.Success
	a.StatusCodes = map[string]int{}
	for k, v := range vm.StatusCodes {
		a.StatusCodes[k] = v
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	a.LatencyMS = Percentiles{P50: ms(vm.Latencies.P50), P90: ms(vm.Latencies.P90), P99: ms(vm.Latencies.P99), Max: ms(vm.Latencies.Max), Mean: ms(vm.Latencies.Mean)}
}

// The generator verdict's thresholds.
const (
	lateLagMS      = 100  // requests leaving this late (p99) are late
	shortRate      = 0.95 // an achieved rate under this share of the target is short
	busySelfCheck  = 0.5  // a self-check under this share of the usual one: the machine is busy
	minSelfChecks  = 3    // earlier self-checks needed to know the usual rate
	keptSelfChecks = 20   // self-checks the history keeps
)

// judgeGenerator tells "the generator could not keep up" (requests left
// late and the achieved rate fell short of the target: the run did not
// measure the service, Saturated) from "the machine was busy" (the
// self-check far below its usual rate, or requests late with the rate met:
// MachineBusy, the latencies include waits for the CPU).
func judgeGenerator(g *Generator) {
	g.Saturated, g.Reason, g.MachineBusy, g.MachineReason = false, "", false, ""
	late := g.LagMS.P99 > lateLagMS
	short := g.TargetRate > 0 && g.AchievedRate < shortRate*g.TargetRate
	if late && short {
		g.Saturated = true
		g.Reason = fmt.Sprintf("the generator could not keep up: requests left up to %.0f ms (p99) after they were due and it sent %.1f/s of the %.1f/s offered", g.LagMS.P99, g.AchievedRate, g.TargetRate)
	}
	var busy []string
	if g.UsualSelfCheckRate > 0 && g.SelfCheckRate > 0 && g.SelfCheckRate < busySelfCheck*g.UsualSelfCheckRate {
		busy = append(busy, fmt.Sprintf("the self-check reached %.0f/s, %.0f%% of this machine's usual %.0f/s", g.SelfCheckRate, 100*g.SelfCheckRate/g.UsualSelfCheckRate, g.UsualSelfCheckRate))
	}
	if late && !short {
		busy = append(busy, fmt.Sprintf("requests left up to %.0f ms (p99) after they were due, although the rate was met (%.1f/s of %.1f/s)", g.LagMS.P99, g.AchievedRate, g.TargetRate))
	}
	if len(busy) > 0 {
		g.MachineBusy = true
		g.MachineReason = "the machine was busy: " + strings.Join(busy, "; ")
	}
}

// selfCheckHistory is the file Options.SelfCheckHistory names.
type selfCheckHistory struct {
	Host  string    `json:"host"`
	Cores int       `json:"cores"`
	Rates []float64 `json:"rates"` // newest last
}

// recordSelfCheck adds rate to the history in path and returns the usual
// rate before it: the median of the earlier ones on this host and core
// count (0 with fewer than minSelfChecks). A history of another machine
// is started afresh.
func recordSelfCheck(path string, rate float64) (usual float64, err error) {
	host, _ := os.Hostname()
	h := selfCheckHistory{Host: host, Cores: runtime.NumCPU()}
	if b, err := os.ReadFile(path); err == nil {
		var old selfCheckHistory
		if json.Unmarshal(b, &old) == nil && old.Host == h.Host && old.Cores == h.Cores {
			h.Rates = old.Rates
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if len(h.Rates) >= minSelfChecks {
		sorted := append([]float64(nil), h.Rates...)
		sort.Float64s(sorted)
		usual = sorted[len(sorted)/2]
	}
	h.Rates = append(h.Rates, rate)
	if len(h.Rates) > keptSelfChecks {
		h.Rates = h.Rates[len(h.Rates)-keptSelfChecks:]
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return usual, err
	}
	return usual, writeJSON(path, &h)
}

// drain follows the ledger and the statuses until every accepted message
// has an outcome, then waits for delivery reports to be applied. It
// returns how many statuses it read and whether it finished in time.
func (r *runner) drain(ctx context.Context, acct *accountant, entry func(mockwx.LedgerEntry), receipt func(*tracked, time.Time), live *liveStats, from time.Time) (int, bool) {
	deadline := from.Add(r.sc.DrainTimeout.D())
	mock := r.stack.Mock()
	checked := 0
	lastStatus := time.Time{}
	readLedger := func() {
		_ = mock.AllMessages(ctx, acct.lastSeq, func(e mockwx.LedgerEntry) error {
			acct.ledger(e, entry, receipt)
			return nil
		})
	}
	for {
		readLedger()
		out := acct.outstanding()
		live.outstanding.Store(int64(len(out)))
		live.delivered.Store(int64(acct.delivered()))
		if len(out) == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.logf("drain timeout: %d messages have no outcome after %s", len(out), r.sc.DrainTimeout)
			checked += r.checkStatuses(ctx, out)
			return checked, false
		}
		if time.Since(lastStatus) > 3*time.Second && time.Since(from) > 2*time.Second {
			// Failed messages never reach the ledger: ask the service.
			checked += r.checkStatuses(ctx, out[:min(len(out), 2000)])
			lastStatus = time.Now()
			continue
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	// Delivery reports: statuses move to delivered (or failed) when the
	// mock's callbacks are applied. Read them all (up to the limit),
	// repeating for those not final yet, within the drain budget; only
	// the messages of apps with delivery reports can become final.
	reporting := reportingApps(r.sc.Mock.Apps)
	all := make([]*tracked, 0, len(acct.byMarker))
	for _, t := range acct.byMarker {
		all = append(all, t)
	}
	if len(all) > r.opts.StatusCheckLimit {
		r.sum.Run.Warnings = append(r.sum.Run.Warnings, fmt.Sprintf("statuses read for %d of %d messages (--status-limit)", r.opts.StatusCheckLimit, len(all)))
		all = all[:r.opts.StatusCheckLimit]
	}
	checked += r.checkStatuses(ctx, all)
	if len(reporting) == 0 {
		return checked, true
	}
	confirmBy := time.Now().Add(15 * time.Second)
	if confirmBy.After(deadline) {
		confirmBy = deadline
	}
	for time.Now().Before(confirmBy) && ctx.Err() == nil {
		pending := awaitingReports(all, reporting)
		live.unconfirmed.Store(int64(len(pending)))
		if len(pending) == 0 {
			break
		}
		sleepCtx(ctx, 500*time.Millisecond)
		checked += r.checkStatuses(ctx, pending)
	}
	return checked, true
}

// checkStatuses reads GET /v1/messages/{id} for each message, 16 at a time,
// spread over the instances.
func (r *runner) checkStatuses(ctx context.Context, ts []*tracked) int {
	urls := r.stack.ServiceURLs()
	if len(urls) == 0 || len(ts) == 0 {
		return 0
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	apis := make([]*client.Client, 0, len(urls))
	for _, u := range urls {
		api, err := client.New(u, client.WithAPIKey(r.stack.APIKey()), client.WithHTTPClient(hc), client.WithUserAgent("wxload/"+version.Version))
		if err != nil {
			r.logf("status check: instance %s: %v", u, err)
			return 0
		}
		apis = append(apis, api)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, t := range ts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, err := apis[i%len(apis)].Get(ctx, t.id)
			if err != nil {
				return // unknown, or the instance is down: read again next round
			}
			n.Add(1)
			t.status, t.reason, t.updatedAt = m.Status, m.Reason, m.UpdatedAt
			t.confirmedAt = confirmedAt(m)
		}()
	}
	wg.Wait()
	return int(n.Load())
}

// mockDelta is the mock's figures between two reads of its stats (the
// sends by errcode from the ledger are the caller's).
func mockDelta(before, st mockwx.Stats) MockFigures {
	var m MockFigures
	m.TokenCalls = st.TokenCalls - before.TokenCalls
	m.StableTokenCalls = st.StableTokenCalls - before.StableTokenCalls
	m.SendCalls = st.SendCalls - before.SendCalls
	m.Delivered = st.Delivered - before.Delivered
	m.Deduplicated = st.Deduplicated - before.Deduplicated
	m.FaultsFired = st.FaultsFired - before.FaultsFired
	m.ByErrcode = map[string]int64{}
	for k, v := range st.ByErrcode {
		if d := v - before.ByErrcode[k]; d != 0 {
			m.ByErrcode[k] = d
		}
	}
	m.Injected = map[string]int64{}
	for k, v := range st.Injected {
		if d := v - before.Injected[k]; d != 0 {
			m.Injected[k] = d
		}
	}
	m.CallbacksSent = st.Callbacks.Sent - before.Callbacks.Sent
	m.CallbacksAcked = st.Callbacks.Acked - before.Callbacks.Acked
	m.CallbacksFailed = st.Callbacks.Failed - before.Callbacks.Failed
	return m
}

func runTag(seed int64) string {
	v := uint64(time.Now().UnixNano()) ^ uint64(seed)*0x9e3779b97f4a7c15
	return "wl" + strconv.FormatUint(v%(36*36*36*36*36), 36)
}

func describePacer(l scenarios.Load) string {
	p := l.Pacer
	switch p.Type {
	case scenarios.PacerLinear:
		return fmt.Sprintf("linear %.0f -> %.0f req/s", p.Rate, p.To)
	case scenarios.PacerSine:
		return fmt.Sprintf("sine %.0f ± %.0f req/s every %s", p.Rate, p.Amp, p.Period)
	case scenarios.PacerSteps:
		return fmt.Sprintf("%d steps up to %.0f req/s", len(p.Steps), l.PeakRate())
	default:
		return fmt.Sprintf("constant %.0f req/s", p.Rate)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// confirmedAt is when the service applied the message's delivery report:
// its delivered_at, or the updated_at of a failure a report caused (it
// has a delivery_status); zero when no report was applied.
func confirmedAt(m *service.Message) time.Time {
	switch {
	case m.Status == service.StatusDelivered && m.DeliveredAt != nil:
		return *m.DeliveredAt
	case m.Status == service.StatusFailed && m.DeliveryStatus != "":
		return m.UpdatedAt
	}
	return time.Time{}
}
