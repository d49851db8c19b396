package loadtest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/scenarios"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		err  string
	}{
		{"0/1", Shard{Index: 0, Count: 1}, ""},
		{"3/4", Shard{Index: 3, Count: 4}, ""},
		{" 1 / 2 ", Shard{Index: 1, Count: 2}, ""},
		{"4/4", Shard{}, "I must be 0 to 3"},
		{"-1/4", Shard{}, "I must be 0 to 3"},
		{"1/0", Shard{}, "N must be 1 to"},
		{"1", Shard{}, "want I/N"},
		{"a/2", Shard{}, "integers"},
		{"1/10001", Shard{}, "N must be 1 to 10000"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseShard(tc.in)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrUsage, tc.in)
				assert.Contains(t, err.Error(), tc.err, tc.in)
				return
			}
			require.NoError(t, err, tc.in)
			assert.Equal(t, tc.want, got, tc.in)
		})
	}
}

func TestCheckRunID(t *testing.T) {
	for _, ok := range []string{"1733456789", "5f0c7a9e-7c59-4f6e-9d3b-2a1f0e8c6b4d", "nightly.2026-12-06", "job:wxload"} {
		assert.NoError(t, CheckRunID(ok), ok)
	}
	for _, bad := range []string{"", "-x", "has space", "a/b", strings.Repeat("x", 129)} {
		assert.ErrorIs(t, CheckRunID(bad), ErrUsage, bad)
	}
	assert.Contains(t, CheckRunID("").Error(), "--run-id")
}

// TestCheckShard: a shard needs remote mode and a run id; a run id needs
// a shard.
func TestCheckShard(t *testing.T) {
	assert.NoError(t, checkShard(Shard{}, false))
	assert.NoError(t, checkShard(Shard{RunID: "r1", Index: 1, Count: 2}, true))
	for name, tc := range map[string]struct {
		sh     Shard
		remote bool
		want   string
	}{
		"embedded":     {Shard{RunID: "r1", Index: 0, Count: 2}, false, "running deployment"},
		"no run id":    {Shard{Index: 0, Count: 2}, true, "--run-id"},
		"index":        {Shard{RunID: "r1", Index: 2, Count: 2}, true, "0 <= I < N"},
		"run id alone": {Shard{RunID: "r1"}, true, "goes with --shard"},
	} {
		err := checkShard(tc.sh, tc.remote)
		require.ErrorIs(t, err, ErrUsage, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
}

func testLoads() map[string]scenarios.Load {
	d := func(s float64) scenarios.Duration { return scenarios.Duration(time.Duration(s * float64(time.Second))) }
	return map[string]scenarios.Load{
		"constant":   {Duration: d(10), Pacer: scenarios.Pacer{Type: scenarios.PacerConstant, Rate: 33.3}},
		"integral":   {Duration: d(3), Pacer: scenarios.Pacer{Type: scenarios.PacerConstant, Rate: 30}},
		"linear":     {Duration: d(7), Pacer: scenarios.Pacer{Type: scenarios.PacerLinear, Rate: 5, To: 61}},
		"sine":       {Duration: d(9), Pacer: scenarios.Pacer{Type: scenarios.PacerSine, Rate: 40, Amp: 15, Period: d(4)}},
		"steps":      {Duration: d(6), Pacer: scenarios.Pacer{Type: scenarios.PacerSteps, Steps: []scenarios.Step{{Rate: 10, Duration: d(2)}, {Rate: 47, Duration: d(4)}}}},
		"tiny":       {Duration: d(1), Pacer: scenarios.Pacer{Type: scenarios.PacerConstant, Rate: 2}},
		"fractional": {Duration: d(1.5), Pacer: scenarios.Pacer{Type: scenarios.PacerConstant, Rate: 3.1}},
	}
}

// drive runs a pacer the way vegeta does when every request leaves on
// time, and returns the due times of the requests it sends.
func drive(p pacer) []time.Duration {
	var dues []time.Duration
	elapsed := time.Duration(0)
	for hits := uint64(0); ; hits++ {
		wait, stop := p.Pace(elapsed, hits)
		if stop {
			return dues
		}
		elapsed += wait
		dues = append(dues, elapsed)
	}
}

// TestShareSplit: for every pacer shape and shard count, the shards send
// every request of the unsharded load exactly once, each when the
// unsharded run would, their counts sum to the unsharded count (the
// first ones take the remainder) and their rates sum to the load's.
func TestShareSplit(t *testing.T) {
	for name, l := range testLoads() {
		whole := drive(pacer{load: l})
		require.Equal(t, int(ceilHits(l.TotalHits())), len(whole), "%s: the unsharded pacer sends ceil(total)", name)
		for _, n := range []int{1, 2, 3, 7, 64} {
			seen := make([]int, len(whole))
			sum := 0
			counts := make([]uint64, n)
			for i := range n {
				sh := Shard{RunID: "r", Index: i, Count: n}.share()
				dues := drive(pacer{load: l, share: sh})
				counts[i] = sh.requests(l)
				assert.Equal(t, int(counts[i]), len(dues), "%s %d/%d: requests() is what its pacer sends", name, i, n)
				for k, due := range dues {
					g := sh.global(uint64(k))
					require.Less(t, g, uint64(len(whole)), "%s %d/%d: request %d", name, i, n, k)
					seen[g]++
					assert.Equal(t, whole[g], due, "%s %d/%d: request %d leaves when the unsharded run sends it", name, i, n, k)
				}
				sum += len(dues)
			}
			assert.Equal(t, len(whole), sum, "%s /%d: the shards' requests sum to the load's", name, n)
			for g, c := range seen {
				assert.Equal(t, 1, c, "%s /%d: request %d sent by exactly one shard", name, n, g)
			}
			for i := 1; i < n; i++ {
				assert.LessOrEqual(t, counts[i], counts[i-1], "%s /%d: the remainder goes to the first shards", name, n)
				assert.LessOrEqual(t, counts[0]-counts[i], uint64(1), "%s /%d: shares differ by at most one", name, n)
			}
			for _, at := range []time.Duration{0, 700 * time.Millisecond, 2500 * time.Millisecond} {
				var rate float64
				for i := range n {
					rate += Shard{RunID: "r", Index: i, Count: n}.share().rateAt(l, at)
				}
				assert.InDelta(t, l.RateAt(at), rate, 1e-9, "%s /%d at %s: the shards' rates sum to the load's", name, n, at)
			}
		}
	}
}

// TestShardMarkersDistinct: the shards of a run share a prefix, have
// distinct tags (a retried shard too), and no shard's accounting counts
// another's messages, whatever their indices.
func TestShardMarkersDistinct(t *testing.T) {
	const n = 12
	tags := map[string]int{}
	for i := range n {
		tag := shardTag("run-1", i)
		assert.True(t, strings.HasPrefix(tag, runPrefix("run-1")), tag)
		assert.NotContains(t, tag, "-", "a tag holds no '-'")
		assert.Equal(t, tag, tagOf(tag+"-1z"))
		_, dup := tags[tag]
		assert.False(t, dup, tag)
		tags[tag] = i
		assert.NotEqual(t, tag, shardTag("run-1", i), "a shard started again has new markers")
	}
	assert.NotEqual(t, runPrefix("run-1"), runPrefix("run-2"))
	for tag, i := range tags {
		acct := newAccountant(tag, nil, time.Time{})
		for other, j := range tags {
			e := mockwx.LedgerEntry{Data: json.RawMessage(fmt.Sprintf(`{%q:{"value":%q}}`, MarkerKey, other+"-5"))}
			_, ok := acct.markerOf(e)
			assert.Equal(t, i == j, ok, "shard %d's accounting and shard %d's marker", i, j)
		}
	}
}

// TestHistogramMerge: latencies recorded in several shards' histograms,
// written to histograms.json and read back, merge into exactly the
// histogram one generator recording them all would have.
func TestHistogramMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := newHist()
	parts := []*hdrhistogram.Histogram{newHist(), newHist(), newHist()}
	for i := range 30_000 {
		// A heavy tail: most fast, some very slow, one shard slower.
		v := int64(rng.ExpFloat64()*2000) + 1
		if i%3 == 2 {
			v *= 10
		}
		if rng.IntN(1000) == 0 {
			v += 5_000_000
		}
		require.NoError(t, all.RecordValue(v))
		require.NoError(t, parts[i%3].RecordValue(v))
	}
	var read []*hdrhistogram.Histogram
	for i, p := range parts {
		dir := t.TempDir()
		require.NoError(t, writeHistograms(filepath.Join(dir, HistogramsFile), runHistograms{Lag: p}))
		h, err := readHistograms(dir)
		require.NoError(t, err, "shard %d", i)
		require.NotNil(t, h.Lag)
		assert.Nil(t, h.Accept, "a histogram the file does not hold")
		read = append(read, h.Lag)
	}
	merged, dropped := mergeHists(read...)
	assert.Zero(t, dropped)
	assert.True(t, all.Equals(merged), "bucket for bucket")
	assert.Equal(t, percentiles(all), percentiles(merged))
	assert.Equal(t, spectrum(all), spectrum(merged))
	// Averaging the shards' percentiles would be wrong: the point of it.
	var avgP99 float64
	for _, p := range parts {
		avgP99 += percentiles(p).P99 / 3
	}
	assert.NotEqual(t, percentiles(all).P99, avgP99)
}

// TestMergedAcceptMetrics: vegeta's metrics over the shards' results.bin
// files, read one after the other, are those of one generator that
// recorded every result.
func TestMergedAcceptMetrics(t *testing.T) {
	start := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	var all vegeta.Metrics
	var dirs []*shardDir
	for i := range 2 {
		dir := t.TempDir()
		f, err := os.Create(filepath.Join(dir, ResultsFile))
		require.NoError(t, err)
		enc := vegeta.NewEncoder(f)
		for k := range 500 {
			res := &vegeta.Result{Seq: uint64(k), Code: 202, Timestamp: start.Add(time.Duration(2*k+i) * 10 * time.Millisecond),
				Latency: time.Duration(1+k%37+i*50) * time.Millisecond}
			if k%100 == 7 {
				res.Code, res.Error = 503, "503 Service Unavailable"
			}
			require.NoError(t, enc.Encode(res))
			all.Add(res)
		}
		require.NoError(t, f.Close())
		dirs = append(dirs, &shardDir{dir: dir, sum: &Summary{}})
	}
	all.Close()
	m := &merger{shards: dirs, series: newSeriesBuilder(start)}
	m.sum.zeroMaps()
	require.NoError(t, m.accept())
	var want Accept
	want.ErrorKinds = map[string]int{}
	fillAccept(&want, &all)
	assert.Equal(t, want, m.sum.Accept)
	assert.Equal(t, 1000, m.sum.Accept.Requests)
	assert.Equal(t, 10, m.sum.Accept.StatusCodes["503"])
	assert.EqualValues(t, 1000, m.hists.Accept.TotalCount())
	var sent, ok, errs int
	for _, s := range m.series.seconds {
		sent, ok, errs = sent+s.Sent, ok+s.OK, errs+s.Errors
	}
	assert.Equal(t, []int{1000, 990, 10}, []int{sent, ok, errs})
}

// TestSpanDelta: the mock's figures over overlapping shards count each
// call once: the smallest counter before, the largest after.
func TestSpanDelta(t *testing.T) {
	st := func(send int64, codes map[string]int64) mockwx.Stats {
		return mockwx.Stats{SendCalls: send, TokenCalls: send / 100, ByErrcode: codes}
	}
	// Shard 0 ran from 100 to 900 sends, shard 1 from 150 to 1000.
	got := spanDelta(
		[]mockwx.Stats{st(100, map[string]int64{"0": 100}), st(150, map[string]int64{"0": 148, "-1": 2})},
		[]mockwx.Stats{st(900, map[string]int64{"0": 895, "-1": 5}), st(1000, map[string]int64{"0": 994, "-1": 6})})
	assert.EqualValues(t, 900, got.SendCalls)
	assert.EqualValues(t, 9, got.TokenCalls)
	assert.Equal(t, map[string]int64{"0": 894, "-1": 6}, got.ByErrcode, "an errcode unseen before counted from 0")
}

// writeShardDir writes the summary and scenario of a fake shard.
func writeShardDir(t *testing.T, runID, scenario string, index, count int, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("shard-%d", index))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	s := &Summary{Scenario: scenario}
	s.Run.Shard = ShardInfo{RunID: runID, Index: index, Count: count, Marker: runPrefix(runID) + fmt.Sprint(index) + "r000000"}
	s.zeroMaps()
	require.NoError(t, writeJSON(filepath.Join(dir, SummaryFile), s))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "scenario.yaml"), []byte(src), 0o644))
	return dir
}

// TestMergeRefuses: directories that are not the N distinct shards of one
// run are refused before anything is written, naming the problem.
func TestMergeRefuses(t *testing.T) {
	src := "name: s\n"
	a0 := writeShardDir(t, "A", "s", 0, 3, src)
	a1 := writeShardDir(t, "A", "s", 1, 3, src)
	a2 := writeShardDir(t, "A", "s", 2, 3, src)
	plain := filepath.Join(t.TempDir(), "plain")
	require.NoError(t, os.MkdirAll(plain, 0o755))
	ps := &Summary{Scenario: "s"}
	ps.zeroMaps()
	require.NoError(t, writeJSON(filepath.Join(plain, SummaryFile), ps))
	merged := writeShardDir(t, "A", "s", -1, 3, src)

	for name, tc := range map[string]struct {
		dirs []string
		want string
	}{
		"none":             {nil, "name the run directories"},
		"missing one":      {[]string{a0, a2}, "run A has 3 shards; shard 1 is missing"},
		"missing two":      {[]string{a1}, "shards 0, 2 are missing"},
		"duplicate":        {[]string{a0, a1, a1, a2}, "shard 1/3 of run A is given twice"},
		"other run":        {[]string{a0, a1, writeShardDir(t, "B", "s", 2, 3, src)}, `is run "B"`},
		"other scenario":   {[]string{a0, a1, writeShardDir(t, "A", "t", 2, 3, src)}, `ran "t"`},
		"other definition": {[]string{a0, a1, writeShardDir(t, "A", "s", 2, 3, "name: s\nseed: 2\n")}, "different definitions"},
		"other count":      {[]string{a0, a1, writeShardDir(t, "A", "s", 2, 4, src)}, "a shard of 4"},
		"not sharded":      {[]string{a0, plain}, "not sharded"},
		"a merge":          {[]string{merged}, "already a merge"},
		"no directory":     {[]string{a0, a1, filepath.Join(t.TempDir(), "nope")}, "is not a run directory"},
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "merged")
			_, err := Merge(t.Context(), tc.dirs, MergeOptions{OutDir: out})
			require.ErrorIs(t, err, ErrUsage)
			assert.Contains(t, err.Error(), tc.want)
			assert.NoDirExists(t, out, "nothing written")
		})
	}
}

const shardScenario = `name: short-shards
description: a short sharded run for the tests
stack:
  instances: 2
  workers: 8
mock:
  settings: {callback_delay_ms: 10}
load:
  duration: 3s
  pacer: {rate: 41}
  duplicate_ratio: 0.1
  batch: {share: 0.1, size: 3}
drain_timeout: 45s
expect:
  - delivery.lost == 0
  - delivery.duplicates == 0
  - delivery.delivered == delivery.accepted
`

// TestShardedRunEndToEnd starts the embedded stack, runs two shards of
// one run concurrently against it in remote mode, and merges them, with
// the mock's ledger and with the shards' extracts: the merged summary
// accounts for every message of both shards exactly once.
func TestShardedRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack and runs two shards")
	}
	sc, err := scenarios.Parse([]byte(shardScenario), "short-shards.yaml")
	require.NoError(t, err)
	sc = sc.WithDefaults()
	stack, err := startEmbedded(t.Context(), sc, redisChoice{url: RedisMini}, filepath.Join(t.TempDir(), "logs"), 100_000, nil)
	require.NoError(t, err)
	t.Cleanup(stack.Close)
	mockURL := stack.Mock().BaseURL()

	const n = 2
	dirs := make([]string, n)
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dirs[i] = filepath.Join(t.TempDir(), fmt.Sprintf("shard-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Run(t.Context(), sc, Options{
				OutDir: dirs[i], Services: stack.ServiceURLs(), MockURL: mockURL, APIKey: stack.APIKey(),
				NoSelfCheck: true, Shard: Shard{RunID: "e2e-run", Index: i, Count: n},
			})
		}()
	}
	wg.Wait()
	var accepted, requests int
	markers := map[string]int{}
	for i := range n {
		require.NoError(t, errs[i], "shard %d", i)
		s := results[i].Summary
		assert.Equal(t, ShardInfo{RunID: "e2e-run", Index: i, Count: n, Marker: s.Run.Shard.Marker, LedgerFrom: s.Run.Shard.LedgerFrom}, s.Run.Shard)
		assert.Equal(t, "remote", s.Run.Mode)
		assert.Zero(t, s.Delivery.Lost, "shard %d", i)
		assert.Positive(t, s.Delivery.Accepted, "shard %d", i)
		accepted += s.Delivery.Accepted
		requests += s.Accept.Requests
		for _, f := range []string{MessagesFile, ShardFile, HistogramsFile, LedgerFile, ResultsFile} {
			assert.FileExists(t, filepath.Join(dirs[i], f))
		}
		require.NoError(t, readJSONLines(filepath.Join(dirs[i], MessagesFile), func(r MessageRecord) error {
			markers[r.Marker]++
			assert.Equal(t, s.Run.Shard.Marker, tagOf(r.Marker))
			return nil
		}))
	}
	assert.Len(t, markers, accepted, "no marker in two shards")
	// 3 s at 41/s: 123 requests split 62 + 61; a late generator may miss
	// the last ones when the load's time is up.
	assert.LessOrEqual(t, requests, 123)
	assert.Greater(t, requests, 100)

	for _, source := range []string{"mock", "shards"} {
		t.Run(source, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "merged")
			opts := MergeOptions{OutDir: out}
			if source == "mock" {
				opts.MockURL = mockURL
			}
			// The directories in any order.
			res, err := Merge(t.Context(), []string{dirs[1], dirs[0]}, opts)
			require.NoError(t, err)
			s := res.Summary
			assert.True(t, s.Passed, "%+v", s.Expectations)
			assert.Equal(t, -1, s.Run.Shard.Index)
			assert.Equal(t, n, s.Run.Shard.Count)
			assert.Equal(t, source, s.Run.Shard.LedgerSource)
			require.Len(t, s.Run.Shard.Merged, n)
			assert.Equal(t, accepted, s.Delivery.Accepted, "the sum of the shards' accepts")
			assert.Equal(t, accepted, s.Delivery.Delivered, "every message delivered")
			assert.Zero(t, s.Delivery.Lost)
			assert.Zero(t, s.Delivery.Duplicates)
			assert.Equal(t, requests, s.Accept.Requests)
			assert.Equal(t, results[0].Summary.Accept.Replayed+results[1].Summary.Accept.Replayed, s.Accept.Replayed)
			assert.InDelta(t, 41, s.Generator.TargetRate, 1e-9, "the shards' target rates sum to the scenario's")
			assert.InDelta(t, 41, s.Generator.PeakRate, 1e-9)
			assert.GreaterOrEqual(t, s.Mock.SendCalls, int64(accepted), "the mock's figures span both shards")
			assert.LessOrEqual(t, s.Mock.SendCalls, results[0].Summary.Mock.SendCalls+results[1].Summary.Mock.SendCalls, "and count no call twice")
			var sent, delivered int
			for k, v := range s.Mock.SendsByErrcode {
				sent += int(v)
				if k == "0" {
					delivered = int(v)
				}
			}
			assert.Equal(t, accepted, delivered, "one successful send per message")
			assert.GreaterOrEqual(t, sent, accepted)
			assert.Positive(t, s.Accept.LatencyMS.P50)
			assert.Positive(t, s.Delivery.E2ELatencyMS.P50)
			assert.False(t, math.IsNaN(s.Generator.LagMS.P99))

			ser, err := ReadSeries(out)
			require.NoError(t, err)
			var serSent, serDelivered int
			for _, sec := range ser.Seconds {
				serSent += sec.Sent
				serDelivered += sec.Delivered
			}
			assert.Equal(t, requests, serSent)
			assert.Equal(t, accepted, serDelivered)
			text, err := os.ReadFile(filepath.Join(out, TextFile))
			require.NoError(t, err)
			assert.Contains(t, string(text), "merged from 2 shards of run e2e-run")
			assert.FileExists(t, filepath.Join(out, ReportFile))
			assert.FileExists(t, filepath.Join(out, HistogramsFile))
		})
	}
}
