package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
)

// MergeOptions are how wxload merge combines the shards of a run.
type MergeOptions struct {
	// OutDir is the merged run directory (created; default
	// runs/NAME-merged-TIMESTAMP).
	OutDir string
	// MockURL, when set, is the mock whose ledger the merge reads to
	// account for every shard's messages (MockToken is its admin token);
	// without it the merge reads the shards' ledger.jsonl extracts.
	MockURL   string
	MockToken string
	// Render writes index.html for a run directory; nil writes the plain
	// text report (as Options.Render).
	Render func(dir string) error
	// Progress receives a line per step; nil is quiet.
	Progress io.Writer
}

// shardDir is one shard's run directory as the merge reads it.
type shardDir struct {
	dir      string
	sum      *Summary
	scenario []byte // scenario.yaml
	ser      *Series
	hists    runHistograms
	stats    *shardStats
}

// Merge combines the run directories of the shards of one sharded run
// (wxload run --shard I/N, the same --run-id) into one run directory with
// one summary.json, verdict and report, as if one generator had offered
// the whole load:
//
//   - accept figures come from every shard's results.bin (vegeta's
//     metrics over all requests), latency percentiles from the merged
//     histograms (never from averaged percentiles);
//   - delivery figures from accounting for every shard's accepted messages
//     (messages.jsonl) against the mock's ledger: the live one with
//     MockURL, else the shards' ledger.jsonl extracts;
//   - the mock's figures from its stats before the first shard and after
//     the last (shard.json), so that overlapping shards count nothing
//     twice; the service's figures are the largest of the shards' (each
//     shard scraped the whole deployment over its own time), the
//     timeline and users are shard 0's.
//
// Directories that are not the N distinct shards of one run are refused
// with ErrUsage, naming what is missing or duplicated.
func Merge(ctx context.Context, dirs []string, opts MergeOptions) (*Result, error) {
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	shards, err := loadShards(dirs)
	if err != nil {
		return nil, err
	}
	first := shards[0]
	info := first.sum.Run.Shard
	sc, err := scenarios.Parse(first.scenario, filepath.Join(first.dir, "scenario.yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	sc = sc.WithDefaults()
	if opts.OutDir == "" {
		opts.OutDir = filepath.Join("runs", sc.Name+"-merged-"+time.Now().Format("20060102-150405"))
	}
	for _, sh := range shards {
		if same, _ := sameDir(sh.dir, opts.OutDir); same {
			return nil, fmt.Errorf("%w: --out %s is shard %d's directory: the merge writes elsewhere", ErrUsage, opts.OutDir, sh.sum.Run.Shard.Index)
		}
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "merging %d shards of run %s (%s)\n", len(shards), info.RunID, sc.Name)

	m := &merger{sc: sc, shards: shards}
	m.start = first.ser.Start
	for _, sh := range shards {
		if !sh.ser.Start.IsZero() && (m.start.IsZero() || sh.ser.Start.Before(m.start)) {
			m.start = sh.ser.Start
		}
	}
	m.series = newSeriesBuilder(m.start)
	s := &m.sum
	s.zeroMaps()
	if err := m.accept(); err != nil {
		return nil, err
	}
	source, err := m.account(ctx, opts)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "accounted for %d messages against the %s ledger\n", s.Delivery.Accepted, map[string]string{"mock": "mock's", "shards": "shards' extracts of the"}[source])
	m.combine(source)
	s.zeroMaps()
	s.Evaluate(sc.Expect)

	ser := m.buildSeries()
	if src, err := os.ReadFile(filepath.Join(first.dir, "scenario.yaml")); err == nil {
		_ = os.WriteFile(filepath.Join(opts.OutDir, "scenario.yaml"), src, 0o644)
	}
	if err := writeHistograms(filepath.Join(opts.OutDir, HistogramsFile), m.hists); err != nil {
		return nil, err
	}
	if err := writeRunDir(opts.OutDir, s, ser, opts.Render); err != nil {
		return nil, err
	}
	return &Result{Dir: opts.OutDir, Summary: s}, nil
}

// loadShards reads the directories and checks that they are the N
// distinct shards of one run, ordered by index.
func loadShards(dirs []string) ([]*shardDir, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%w: name the run directories of the shards to merge", ErrUsage)
	}
	var shards []*shardDir
	for _, d := range dirs {
		s, err := ReadSummary(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not a run directory: %v", ErrUsage, d, err)
		}
		if s.Run.Shard.Count == 0 || s.Run.Shard.Index < 0 {
			what := "a run that is not sharded"
			if s.Run.Shard.Index < 0 {
				what = "already a merge"
			}
			return nil, fmt.Errorf("%w: %s is %s (wxload run --shard I/N writes shards)", ErrUsage, d, what)
		}
		src, err := os.ReadFile(filepath.Join(d, "scenario.yaml"))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: the shard's scenario: %v", ErrUsage, d, err)
		}
		shards = append(shards, &shardDir{dir: d, sum: s, scenario: src})
	}
	ref := shards[0]
	ri := ref.sum.Run.Shard
	for _, sh := range shards[1:] {
		si := sh.sum.Run.Shard
		switch {
		case si.RunID != ri.RunID:
			return nil, fmt.Errorf("%w: not shards of one run: %s is run %q, %s is run %q", ErrUsage, ref.dir, ri.RunID, sh.dir, si.RunID)
		case sh.sum.Scenario != ref.sum.Scenario:
			return nil, fmt.Errorf("%w: not shards of one run: %s ran scenario %q, %s ran %q", ErrUsage, ref.dir, ref.sum.Scenario, sh.dir, sh.sum.Scenario)
		case !bytes.Equal(sh.scenario, ref.scenario):
			return nil, fmt.Errorf("%w: not shards of one run: %s and %s ran different definitions of scenario %q (their scenario.yaml differ)", ErrUsage, ref.dir, sh.dir, ref.sum.Scenario)
		case si.Count != ri.Count:
			return nil, fmt.Errorf("%w: not shards of one run: %s is a shard of %d, %s is a shard of %d", ErrUsage, ref.dir, ri.Count, sh.dir, si.Count)
		}
	}
	byIndex := map[int]*shardDir{}
	for _, sh := range shards {
		i := sh.sum.Run.Shard.Index
		if other, dup := byIndex[i]; dup {
			return nil, fmt.Errorf("%w: shard %d/%d of run %s is given twice: %s and %s", ErrUsage, i, ri.Count, ri.RunID, other.dir, sh.dir)
		}
		if i >= ri.Count {
			return nil, fmt.Errorf("%w: %s is shard %d of %d: out of range", ErrUsage, sh.dir, i, ri.Count)
		}
		byIndex[i] = sh
	}
	var absent []string
	for i := range ri.Count {
		if byIndex[i] == nil {
			absent = append(absent, strconv.Itoa(i))
		}
	}
	if len(absent) > 0 {
		noun := "shard"
		if len(absent) > 1 {
			noun = "shards"
		}
		return nil, fmt.Errorf("%w: run %s has %d shards; %s %s missing (given: %d directories)", ErrUsage, ri.RunID, ri.Count, noun, strings.Join(absent, ", ")+map[bool]string{true: " is", false: " are"}[len(absent) == 1], len(shards))
	}
	sort.Slice(shards, func(i, j int) bool { return shards[i].sum.Run.Shard.Index < shards[j].sum.Run.Shard.Index })
	for _, sh := range shards {
		ser, err := ReadSeries(sh.dir)
		if missing(err) {
			ser, err = &Series{Start: sh.sum.Run.Started}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		sh.ser = ser
		if sh.hists, err = readHistograms(sh.dir); err != nil && !missing(err) {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		if sh.stats, err = readShardStats(sh.dir); err != nil && !missing(err) {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	return shards, nil
}

// sameDir reports whether two paths name one directory.
func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// merger builds the merged summary and series.
type merger struct {
	sc     scenarios.Scenario
	shards []*shardDir
	start  time.Time // the earliest shard's start: second 0 of the series
	sum    Summary
	series *seriesBuilder
	hists  runHistograms
	acct   *accountant
}

// accept reads every shard's results.bin: vegeta's metrics over all the
// requests, the accept latency histogram, and each second's requests.
func (m *merger) accept() error {
	var vm vegeta.Metrics
	h := newHist()
	for _, sh := range m.shards {
		f, err := os.Open(filepath.Join(sh.dir, ResultsFile))
		if err != nil {
			return fmt.Errorf("%w: shard %d: %v", ErrUsage, sh.sum.Run.Shard.Index, err)
		}
		dec := vegeta.NewDecoder(f)
		for {
			var res vegeta.Result
			if err := dec.Decode(&res); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				f.Close()
				return fmt.Errorf("%s: %w", filepath.Join(sh.dir, ResultsFile), err)
			}
			vm.Add(&res)
			us := max(res.Latency.Microseconds(), 1)
			_ = h.RecordValue(us)
			sec := m.series.at(res.Timestamp)
			sec.Sent++
			sec.latency(us)
			if res.Error != "" || res.Code < 200 || res.Code >= 300 {
				sec.Errors++
			} else {
				sec.OK++
			}
		}
		f.Close()
	}
	vm.Close()
	fillAccept(&m.sum.Accept, &vm)
	m.hists.Accept = h
	a := &m.sum.Accept
	for _, sh := range m.shards {
		o := sh.sum.Accept
		a.Messages += o.Messages
		a.Errors += o.Errors
		a.Replayed += o.Replayed
		a.DuplicateRequests += o.DuplicateRequests
		a.BatchRequests += o.BatchRequests
		a.ItemErrors += o.ItemErrors
		for k, v := range o.ErrorKinds {
			a.ErrorKinds[k] += v
		}
	}
	return nil
}

// account rebuilds the accounting of every shard's messages from the
// mock's ledger (opts.MockURL) or the shards' extracts of it, and returns
// which ("mock" or "shards").
func (m *merger) account(ctx context.Context, opts MergeOptions) (string, error) {
	info := m.shards[0].sum.Run.Shard
	acct := newAccountant(runPrefix(info.RunID), nil, m.start)
	acct.tags = map[string]bool{}
	from := uint64(math.MaxUint64)
	for _, sh := range m.shards {
		si := sh.sum.Run.Shard
		if tagOf(si.Marker+"-0") != si.Marker || !strings.HasPrefix(si.Marker, acct.tag) {
			return "", fmt.Errorf("%w: %s: marker tag %q is not one of run %s's", ErrUsage, sh.dir, si.Marker, info.RunID)
		}
		acct.tags[si.Marker] = true
		from = min(from, si.LedgerFrom)
		err := readJSONLines(filepath.Join(sh.dir, MessagesFile), func(r MessageRecord) error {
			if !acct.ours(r.Marker) || tagOf(r.Marker) != si.Marker {
				return fmt.Errorf("%s: marker %q is not shard %d's", filepath.Join(sh.dir, MessagesFile), r.Marker, si.Index)
			}
			if _, dup := acct.byMarker[r.Marker]; dup {
				return fmt.Errorf("%s: marker %q is listed twice", filepath.Join(sh.dir, MessagesFile), r.Marker)
			}
			t := &tracked{id: r.ID, marker: r.Marker, app: r.App, touser: r.ToUser, sentAt: r.SentAt, acceptedAt: r.AcceptedAt,
				status: r.Status, reason: r.Reason, updatedAt: r.UpdatedAt, confirmedAt: r.ConfirmedAt}
			acct.byMarker[r.Marker] = t
			acct.byID[r.ID] = t
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("%w: shard %d: %v", ErrUsage, si.Index, err)
		}
	}
	acct.startSeq, acct.lastSeq = from, from
	m.acct = acct
	codes := map[string]int64{}
	entry := func(e mockwx.LedgerEntry) {
		code := strconv.Itoa(e.ErrCode)
		codes[code]++
		m.series.at(e.ReceivedAt).errcode(code)
	}
	receipt := func(t *tracked, at time.Time) {
		m.series.at(at).delivered(at.Sub(t.sentAt).Microseconds())
	}
	source := "shards"
	if opts.MockURL != "" {
		source = "mock"
		mock := mockwx.NewClient(opts.MockURL, opts.MockToken, nil)
		err := mock.AllMessages(ctx, from, func(e mockwx.LedgerEntry) error {
			acct.ledger(e, entry, receipt)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("the mock's ledger at %s: %w", opts.MockURL, err)
		}
	} else {
		var recs []LedgerRecord
		for _, sh := range m.shards {
			err := readJSONLines(filepath.Join(sh.dir, LedgerFile), func(r LedgerRecord) error {
				recs = append(recs, r)
				return nil
			})
			if err != nil {
				return "", fmt.Errorf("%w: shard %d: %v (wxload merge --mock URL reads the mock's ledger instead)", ErrUsage, sh.sum.Run.Shard.Index, err)
			}
		}
		// The ledger's order: a message's first delivery is its earliest.
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
		var last uint64
		for _, r := range recs {
			if r.Seq == last && last != 0 {
				continue // one entry in two extracts: not possible for distinct tags, but never count it twice
			}
			last = r.Seq
			if !acct.ours(r.Marker) {
				continue
			}
			acct.marked(mockwx.LedgerEntry{Seq: r.Seq, ReceivedAt: r.ReceivedAt, AppID: r.AppID, ToUser: r.ToUser, TemplateID: r.TemplateID,
				ClientMsgID: r.ClientMsgID, MsgID: r.MsgID, ErrCode: r.ErrCode, Deduplicated: r.Deduplicated}, r.Marker, entry, receipt)
		}
	}
	checked := 0
	for _, sh := range m.shards {
		checked += sh.sum.Delivery.StatusChecked
	}
	acct.fill(&m.sum.Delivery, checked)
	m.sum.Mock.SendsByErrcode = codes
	return source, nil
}

// combine fills the figures that come from the shards' summaries.
func (m *merger) combine(source string) {
	s := &m.sum
	first := m.shards[0].sum
	s.Scenario, s.Description = first.Scenario, first.Description
	r := &s.Run
	r.Mode, r.Instances, r.Redis, r.Seed = first.Run.Mode, first.Run.Instances, first.Run.Redis, first.Run.Seed
	r.Version, r.GoVersion = first.Run.Version, first.Run.GoVersion
	r.Shard = ShardInfo{RunID: first.Run.Shard.RunID, Index: -1, Count: first.Run.Shard.Count, LedgerSource: source, LedgerFrom: m.acct.startSeq}
	var attackEnd time.Time
	d := &s.Delivery
	d.Drained = true
	var lags, probes []*hdrhistogram.Histogram
	g := &s.Generator
	usualKnown := true
	var mockBefore, mockAfter []mockwx.Stats
	for _, sh := range m.shards {
		o := sh.sum
		si := o.Run.Shard
		if r.Started.IsZero() || o.Run.Started.Before(r.Started) {
			r.Started = o.Run.Started
		}
		if o.Run.Finished.After(r.Finished) {
			r.Finished = o.Run.Finished
		}
		if end := o.Run.Started.Add(time.Duration(o.Run.DurationSeconds * float64(time.Second))); end.After(attackEnd) {
			attackEnd = end
		}
		r.Cores += o.Run.Cores
		for _, w := range o.Run.Warnings {
			r.Warnings = append(r.Warnings, fmt.Sprintf("shard %d: %s", si.Index, w))
		}
		r.Shard.Merged = append(r.Shard.Merged, MergedShard{Index: si.Index, Dir: sh.dir, Marker: si.Marker, Started: o.Run.Started, Finished: o.Run.Finished,
			Requests: o.Accept.Requests, Accepted: o.Delivery.Accepted, Lost: o.Delivery.Lost, Passed: o.Passed, Saturated: o.Generator.Saturated})

		d.DrainSeconds = math.Max(d.DrainSeconds, o.Delivery.DrainSeconds)
		d.Drained = d.Drained && o.Delivery.Drained
		d.Unattributed = max(d.Unattributed, o.Delivery.Unattributed)

		og := o.Generator
		g.TargetRate += og.TargetRate
		g.PeakRate += og.PeakRate
		g.AchievedRate += og.AchievedRate
		g.SelfCheckRate += og.SelfCheckRate
		g.UsualSelfCheckRate += og.UsualSelfCheckRate
		usualKnown = usualKnown && og.UsualSelfCheckRate > 0
		lags = append(lags, sh.hists.Lag)
		probes = append(probes, sh.hists.Probe)

		mergeService(&s.Service, o.Service)
		if sh.stats != nil {
			mockBefore = append(mockBefore, sh.stats.Before)
			if sh.stats.After != nil {
				mockAfter = append(mockAfter, *sh.stats.After)
			}
		}
	}
	r.DurationSeconds = attackEnd.Sub(r.Started).Seconds()
	// The timeline and the users are shard 0's, on its clock.
	off := first.Run.Started.Sub(m.start).Seconds()
	for _, ev := range first.Run.Timeline {
		ev.AtSeconds += off
		if ev.EndSeconds != 0 {
			ev.EndSeconds += off
		}
		r.Timeline = append(r.Timeline, ev)
	}
	r.TimelineErrors = first.Run.TimelineErrors
	s.Events = first.Events

	var dropped int64
	m.hists.Lag, dropped = mergeHists(lags...)
	var d2 int64
	m.hists.Probe, d2 = mergeHists(probes...)
	if dropped+d2 > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d latencies beyond the histograms' range were left out", dropped+d2))
	}
	lat := m.acct.latencies()
	m.hists.E2E, m.hists.Confirmed = lat.e2e, lat.confirmed
	g.LagMS = percentiles(m.hists.Lag)
	g.ProbeMS = percentiles(m.hists.Probe)
	if !usualKnown {
		g.UsualSelfCheckRate = 0
	}
	if g.UsualSelfCheckRate > 0 {
		g.SelfCheckRatio = g.SelfCheckRate / g.UsualSelfCheckRate
	}
	judgeGenerator(g)
	// A shard that could not keep up (or ran on a busy machine) is not
	// hidden by the others.
	var sat, busy []string
	for _, sh := range m.shards {
		og, i := sh.sum.Generator, sh.sum.Run.Shard.Index
		if og.Saturated {
			sat = append(sat, fmt.Sprintf("shard %d: %s", i, og.Reason))
		}
		if og.MachineBusy {
			busy = append(busy, fmt.Sprintf("shard %d: %s", i, og.MachineReason))
		}
	}
	if len(sat) > 0 {
		g.Saturated = true
		g.Reason = strings.Join(append(nonEmpty(g.Reason), sat...), "; ")
	}
	if len(busy) > 0 {
		g.MachineBusy = true
		g.MachineReason = strings.Join(append(nonEmpty(g.MachineReason), busy...), "; ")
	}

	codes := s.Mock.SendsByErrcode
	if len(mockBefore) == len(m.shards) && len(mockAfter) > 0 {
		s.Mock = spanDelta(mockBefore, mockAfter)
		if len(mockAfter) < len(m.shards) {
			r.Warnings = append(r.Warnings, "the mock's stats after some shards are unknown: its figures end with the last shard that read them")
		}
	} else {
		r.Warnings = append(r.Warnings, "the mock's stats around the shards are unknown (shard.json): mock.* figures other than sends_by_errcode are missing")
	}
	s.Mock.SendsByErrcode = codes

	acct := m.acct
	if n := d.ReceiptsBeforeSend; n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d receipts or delivery reports are stamped before their send: a clock is behind a generator's (left out of the latencies)", n))
	}
	if n := len(acct.unacked); n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d messages reached WeChat although the API's answer never arrived (a lost answer, not a loss)", n))
	}
	if source == "mock" {
		lost := 0
		for _, sh := range m.shards {
			lost += sh.sum.Delivery.Lost
		}
		if lost > d.Lost {
			r.Warnings = append(r.Warnings, fmt.Sprintf("the shards counted %d lost at the end of their drains; %d are still lost by the mock's ledger now", lost, d.Lost))
		}
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// mergeService keeps the largest of each service figure: every shard
// scraped the whole deployment's counters over its own time, so the
// shards' figures overlap and are not added.
func mergeService(dst *ServiceFigures, o ServiceFigures) {
	dst.Accepted = math.Max(dst.Accepted, o.Accepted)
	dst.Replayed = math.Max(dst.Replayed, o.Replayed)
	dst.Sent = math.Max(dst.Sent, o.Sent)
	dst.Failed = math.Max(dst.Failed, o.Failed)
	dst.Retries = math.Max(dst.Retries, o.Retries)
	dst.Reclaimed = math.Max(dst.Reclaimed, o.Reclaimed)
	dst.TokenRefreshes = math.Max(dst.TokenRefreshes, o.TokenRefreshes)
	dst.RedisErrors = math.Max(dst.RedisErrors, o.RedisErrors)
	dst.QueueDepthMax = math.Max(dst.QueueDepthMax, o.QueueDepthMax)
	dst.ScrapeFailures += o.ScrapeFailures
	dst.InstancesSeenUp = max(dst.InstancesSeenUp, o.InstancesSeenUp)
	dst.InstanceRestarts = max(dst.InstanceRestarts, o.InstanceRestarts)
	if dst.AttemptsByCode == nil {
		dst.AttemptsByCode = map[string]float64{}
	}
	for k, v := range o.AttemptsByCode {
		dst.AttemptsByCode[k] = math.Max(dst.AttemptsByCode[k], v)
	}
}

// spanDelta is the mock's figures from the earliest of befores to the
// latest of afters: its counters only grow, so each one's smallest value
// before and largest value after bound every shard's time.
func spanDelta(befores, afters []mockwx.Stats) MockFigures {
	return mockDelta(foldStats(befores, func(a, b int64) int64 { return min(a, b) }), foldStats(afters, func(a, b int64) int64 { return max(a, b) }))
}

// foldStats combines stats counter by counter with pick (a counter a
// read lacks was 0 then).
func foldStats(ss []mockwx.Stats, pick func(a, b int64) int64) mockwx.Stats {
	out := ss[0]
	out.ByErrcode, out.Injected = copyCounts(out.ByErrcode), copyCounts(out.Injected)
	for _, o := range ss[1:] {
		for _, p := range []struct{ dst, src *int64 }{
			{&out.TokenCalls, &o.TokenCalls}, {&out.StableTokenCalls, &o.StableTokenCalls}, {&out.SendCalls, &o.SendCalls},
			{&out.Delivered, &o.Delivered}, {&out.Deduplicated, &o.Deduplicated}, {&out.FaultsFired, &o.FaultsFired},
			{&out.Callbacks.Sent, &o.Callbacks.Sent}, {&out.Callbacks.Acked, &o.Callbacks.Acked}, {&out.Callbacks.Failed, &o.Callbacks.Failed},
		} {
			*p.dst = pick(*p.dst, *p.src)
		}
		for _, p := range []struct{ dst, src map[string]int64 }{{out.ByErrcode, o.ByErrcode}, {out.Injected, o.Injected}} {
			for k := range p.src {
				if _, ok := p.dst[k]; !ok {
					p.dst[k] = 0
				}
			}
			for k, v := range p.dst {
				p.dst[k] = pick(v, p.src[k])
			}
		}
	}
	return out
}

func copyCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// buildSeries adds the shards' own per-second figures (acknowledged
// messages, replays, and the deployment's sampled metrics, the largest
// of the shards') to what accept and account rebuilt, and the spectra.
func (m *merger) buildSeries() Series {
	for _, sh := range m.shards {
		off := int(math.Round(sh.ser.Start.Sub(m.start).Seconds()))
		for _, sec := range sh.ser.Seconds {
			acc := m.series.seconds[sec.T+off]
			if acc == nil {
				acc = &secondAcc{Second: Second{T: sec.T + off}}
				m.series.seconds[sec.T+off] = acc
			}
			acc.Accepted += sec.Accepted
			acc.Replayed += sec.Replayed
			acc.sampled = true
			acc.QueueDepth = math.Max(acc.QueueDepth, sec.QueueDepth)
			acc.TokenRefreshes = math.Max(acc.TokenRefreshes, sec.TokenRefreshes)
			acc.Retries = math.Max(acc.Retries, sec.Retries)
			acc.InstancesUp = max(acc.InstancesUp, sec.InstancesUp)
		}
	}
	for _, t := range m.acct.byMarker {
		if t.failed() && !t.updatedAt.IsZero() {
			m.series.at(t.updatedAt).Failed++
		}
		if !t.confirmedAt.IsZero() {
			m.series.at(t.confirmedAt).confirmed(t.confirmedAt.Sub(t.sentAt).Microseconds())
		}
	}
	s := &m.sum
	attackEnd := s.Run.Started.Add(time.Duration(s.Run.DurationSeconds * float64(time.Second))).Sub(m.start).Seconds()
	end := s.Run.Finished.Sub(m.start).Seconds()
	return Series{Start: m.start, Seconds: m.series.build(m.sc.Load.RateAt), Bands: bands(m.sc, s.Run.Timeline, attackEnd),
		AttackEnd: attackEnd, End: end,
		Spectrum: spectrum(m.hists.Accept), E2ESpectrum: spectrum(m.hists.E2E), ConfirmedSpectrum: spectrum(m.hists.Confirmed)}
}
