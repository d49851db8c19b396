package reports

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wxpush/wxpush/loadtest"
)

// Tolerances are how far a new run may move from its baseline before
// Compare calls it a regression. Both are fractions and their signs are
// ignored: Throughput 0.10 (or -0.10) allows a 10% drop of throughput,
// P99 0.20 a 20% rise of the accept latency p99.
type Tolerances struct {
	Throughput float64
	P99        float64
}

// DefaultTolerances allow throughput -10% and accept p99 +20%.
func DefaultTolerances() Tolerances { return Tolerances{Throughput: 0.10, P99: 0.20} }

// ParsePercent parses a tolerance written as a percentage, "-10%",
// "+20%" or "15" (the % sign is optional), into a fraction.
func ParsePercent(s string) (float64, error) {
	t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("tolerance %q: want a percentage such as -10%% or +20%%", s)
	}
	return v / 100, nil
}

// Check is one regression criterion of a comparison.
type Check struct {
	Name      string // what is compared
	Base, New string // the figures, formatted
	Rule      string // the criterion, e.g. "drop at most 10%"
	Regressed bool
}

// Checks compares next against base: throughput may not drop and the
// accept latency p99 may not rise beyond the tolerances, and next may have
// no lost and no duplicate message.
func Checks(base, next *loadtest.Summary, tol Tolerances) []Check {
	tt, tp := math.Abs(tol.Throughput), math.Abs(tol.P99)
	bt, nt := base.Accept.Throughput, next.Accept.Throughput
	bp, np := base.Accept.LatencyMS.P99, next.Accept.LatencyMS.P99
	return []Check{
		{Name: "throughput", Base: fmtRate(bt) + "/s", New: fmtRate(nt) + "/s",
			Rule: fmt.Sprintf("drops at most %s", pct(tt)), Regressed: bt > 0 && nt < bt*(1-tt)},
		{Name: "accept latency p99", Base: fmtMS(bp), New: fmtMS(np),
			Rule: fmt.Sprintf("rises at most %s", pct(tp)), Regressed: bp > 0 && np > bp*(1+tp)},
		{Name: "lost messages", Base: fmtInt(base.Delivery.Lost), New: fmtInt(next.Delivery.Lost),
			Rule: "none in the new run", Regressed: next.Delivery.Lost > 0},
		{Name: "duplicate deliveries", Base: fmtInt(base.Delivery.Duplicates), New: fmtInt(next.Delivery.Duplicates),
			Rule: "none in the new run", Regressed: next.Delivery.Duplicates > 0},
	}
}

// Comparison is the comparison of a new run with its baseline. Its
// WriteTo writes the comparison page.
type Comparison struct {
	BaseDir, NewDir string
	Base, New       *Report
	Tolerances      Tolerances
	Checks          []Check
}

var _ io.WriterTo = (*Comparison)(nil)

// Regressed reports whether any check failed.
func (c *Comparison) Regressed() bool {
	for _, ch := range c.Checks {
		if ch.Regressed {
			return true
		}
	}
	return false
}

// ErrDifferentScenarios is Comparable's error: the two runs are of
// different scenarios, so their figures do not measure the same thing.
var ErrDifferentScenarios = errors.New("the runs are of different scenarios")

// Comparable reports whether the two runs can be compared: they must be
// runs of the same scenario (ErrDifferentScenarios otherwise): the same
// name and, since a scenario file may reuse a name, the same stack (mode
// and instances) and offered rate. The description may differ (a catalog
// edit between the two versions measured).
func (c *Comparison) Comparable() error {
	b, n := c.Base.Summary, c.New.Summary
	if b.Scenario != n.Scenario {
		return fmt.Errorf("%w: %s is a run of %q, %s a run of %q", ErrDifferentScenarios, c.BaseDir, b.Scenario, c.NewDir, n.Scenario)
	}
	var diff []string
	if b.Run.Mode != n.Run.Mode {
		diff = append(diff, fmt.Sprintf("stack %s vs %s", b.Run.Mode, n.Run.Mode))
	}
	if b.Run.Instances != n.Run.Instances {
		diff = append(diff, fmt.Sprintf("instances %d vs %d", b.Run.Instances, n.Run.Instances))
	}
	if br, nr := b.Generator.TargetRate, n.Generator.TargetRate; math.Abs(br-nr) > 0.01*math.Max(br, nr) {
		diff = append(diff, fmt.Sprintf("offered rate %.4g/s vs %.4g/s", br, nr))
	}
	if len(diff) > 0 {
		return fmt.Errorf("%w: both are called %q, but they differ (%s)", ErrDifferentScenarios, b.Scenario, strings.Join(diff, ", "))
	}
	return nil
}

// NewComparison loads two run directories and checks the second against
// the first. It compares runs of different scenarios too: see Comparable.
func NewComparison(baseDir, newDir string, tol Tolerances) (*Comparison, error) {
	b, err := Load(baseDir)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	n, err := Load(newDir)
	if err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	return &Comparison{BaseDir: baseDir, NewDir: newDir, Base: b, New: n, Tolerances: tol,
		Checks: Checks(b.Summary, n.Summary, tol)}, nil
}

// Compare writes to out a report comparing the run in newDir with the run
// in baseDir and reports whether the new run regressed beyond tol (see
// Checks). An empty out writes a new file in newDir (see Write). It
// refuses runs of different scenarios (ErrDifferentScenarios); compare
// them with NewComparison and Write.
func Compare(baseDir, newDir, out string, tol Tolerances) (regressed bool, err error) {
	c, err := NewComparison(baseDir, newDir, tol)
	if err != nil {
		return false, err
	}
	if err := c.Comparable(); err != nil {
		return false, err
	}
	if _, err := c.Write(out); err != nil {
		return false, err
	}
	return c.Regressed(), nil
}

// Write writes the comparison page to out, creating its directory, and
// returns the path written. An empty out is a new file in the new run's
// directory named after the base run, compare-vs-BASE.html, or
// compare-vs-BASE-2.html and so on when an earlier comparison has that
// name: a comparison never overwrites another unless told to (out).
func (c *Comparison) Write(out string) (string, error) {
	if out == "" {
		var err error
		if out, err = freeName(c.NewDir, "compare-vs-"+safeName(filepath.Base(filepath.Clean(c.BaseDir))), ".html"); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	return out, writeFile(out, c)
}

// freeName is dir/stem+ext, or dir/stem-N+ext for the first N from 2 that
// names no file yet.
func freeName(dir, stem, ext string) (string, error) {
	for n := 1; n < 10_000; n++ {
		name := stem + ext
		if n > 1 {
			name = fmt.Sprintf("%s-%d%s", stem, n, ext)
		}
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("%s: no free name for %s%s", dir, stem, ext)
}

// safeName keeps letters, digits, dots, dashes and underscores of a run
// directory's name, for a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || s == "." || s == ".." {
		return "base"
	}
	return string(b)
}

// diffRow is one figure of both runs.
type diffRow struct {
	Name, Base, New, Delta, Ratio string
	Worse                         bool
}

type compareView struct {
	Wide                bool // a wider page, for wide tables
	Title               string
	Version             string
	Regressed           bool
	BaseName, NewName   string
	BaseDir, NewDir     string
	BaseMeta, NewMeta   string
	BasePassed          bool
	NewPassed           bool
	Checks              []Check
	Notes               []string
	Rows                []diffRow
	Figures             []figure
	BaseLabel, NewLabel string
}

// WriteTo writes the comparison as one self-contained HTML page.
func (c *Comparison) WriteTo(w io.Writer) (int64, error) {
	return execute(w, "compare", c.view())
}

func (c *Comparison) view() *compareView {
	b, n := c.Base.Summary, c.New.Summary
	v := &compareView{
		Title: fmt.Sprintf("wxload comparison: %s vs %s", b.Scenario, n.Scenario), Version: n.Run.Version,
		Regressed: c.Regressed(), BaseName: b.Scenario, NewName: n.Scenario,
		BaseDir: filepath.Base(filepath.Clean(c.BaseDir)), NewDir: filepath.Base(filepath.Clean(c.NewDir)),
		BaseMeta: metaLine(b), NewMeta: metaLine(n), BasePassed: b.Passed, NewPassed: n.Passed, Checks: c.Checks,
	}
	if b.Scenario != n.Scenario {
		v.Notes = append(v.Notes, fmt.Sprintf("The runs are of different scenarios (%s and %s): the figures may not be comparable.", b.Scenario, n.Scenario))
	}
	if n.Generator.Saturated {
		v.Notes = append(v.Notes, "The new run's generator was saturated: its figures partly measure the load generator, not the service.")
	}
	if b.Generator.Saturated {
		v.Notes = append(v.Notes, "The baseline's generator was saturated: its figures partly measure the load generator, not the service.")
	}
	if n.Generator.MachineBusy {
		v.Notes = append(v.Notes, "The new run's machine was busy ("+n.Generator.MachineReason+"): its latencies include waits for the CPU.")
	}
	if b.Generator.MachineBusy {
		v.Notes = append(v.Notes, "The baseline's machine was busy ("+b.Generator.MachineReason+"): its latencies include waits for the CPU.")
	}
	if b.Run.Cores != n.Run.Cores && b.Run.Cores > 0 && n.Run.Cores > 0 {
		v.Notes = append(v.Notes, fmt.Sprintf("The runs had different machines: %d and %d cores.", b.Run.Cores, n.Run.Cores))
	}
	// better says which direction is better: +1 higher, -1 lower, 0
	// neither.
	num := func(name string, bv, nv float64, f func(float64) string, better int) {
		r := diffRow{Name: name, Base: f(bv), New: f(nv), Delta: "—", Ratio: "—"}
		if bv != 0 {
			r.Delta = signedPct((nv - bv) / bv)
			r.Ratio = "×" + strconv.FormatFloat(nv/bv, 'f', 2, 64)
		} else if nv != 0 {
			r.Delta = "new"
		}
		// Moves under 1% are noise, not worse.
		moved := math.Abs(nv-bv) > 0.01*math.Abs(bv)
		r.Worse = moved && ((better > 0 && nv < bv) || (better < 0 && nv > bv))
		v.Rows = append(v.Rows, r)
	}
	cnt := func(v float64) string { return fmtF(v) }
	rate := func(v float64) string { return fmtRate(v) + "/s" }
	secs := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " s" }
	ba, na, bd, nd := b.Accept, n.Accept, b.Delivery, n.Delivery
	num("requests", float64(ba.Requests), float64(na.Requests), cnt, 0)
	num("request rate", ba.Rate, na.Rate, rate, 0)
	num("throughput (successful)", ba.Throughput, na.Throughput, rate, 1)
	num("success ratio", ba.SuccessRatio, na.SuccessRatio, func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }, 1)
	num("API errors", float64(ba.Errors), float64(na.Errors), cnt, -1)
	num("accept p50", ba.LatencyMS.P50, na.LatencyMS.P50, fmtMS, -1)
	num("accept p90", ba.LatencyMS.P90, na.LatencyMS.P90, fmtMS, -1)
	num("accept p99", ba.LatencyMS.P99, na.LatencyMS.P99, fmtMS, -1)
	num("accept max", ba.LatencyMS.Max, na.LatencyMS.Max, fmtMS, -1)
	num("end-to-end p50", bd.E2ELatencyMS.P50, nd.E2ELatencyMS.P50, fmtMS, -1)
	num("end-to-end p90", bd.E2ELatencyMS.P90, nd.E2ELatencyMS.P90, fmtMS, -1)
	num("end-to-end p99", bd.E2ELatencyMS.P99, nd.E2ELatencyMS.P99, fmtMS, -1)
	num("end-to-end max", bd.E2ELatencyMS.Max, nd.E2ELatencyMS.Max, fmtMS, -1)
	num("confirmed p50", bd.ConfirmedLatencyMS.P50, nd.ConfirmedLatencyMS.P50, fmtMS, -1)
	num("confirmed p99", bd.ConfirmedLatencyMS.P99, nd.ConfirmedLatencyMS.P99, fmtMS, -1)
	num("accepted", float64(bd.Accepted), float64(nd.Accepted), cnt, 0)
	num("delivered", float64(bd.Delivered), float64(nd.Delivered), cnt, 0)
	num("failed", float64(bd.Failed), float64(nd.Failed), cnt, -1)
	num("lost", float64(bd.Lost), float64(nd.Lost), cnt, -1)
	num("duplicates", float64(bd.Duplicates), float64(nd.Duplicates), cnt, -1)
	num("drain time", bd.DrainSeconds, nd.DrainSeconds, secs, -1)
	num("service retries", b.Service.Retries, n.Service.Retries, cnt, 0)
	num("token refreshes", b.Service.TokenRefreshes, n.Service.TokenRefreshes, cnt, 0)
	num("queue depth (max)", b.Service.QueueDepthMax, n.Service.QueueDepthMax, cnt, 0)
	num("generator lag p99", b.Generator.LagMS.P99, n.Generator.LagMS.P99, fmtMS, 0)

	v.BaseLabel, v.NewLabel = "base", "new"
	v.Figures = c.figures(v.BaseLabel, v.NewLabel)
	return v
}

// figures overlays the two runs: base in blue, new in orange; p50 solid,
// p99 dashed.
func (c *Comparison) figures(bl, nl string) []figure {
	bs, ns := c.Base.Series, c.New.Series
	xmax := 1.0
	for _, s := range [][]loadtest.Second{bs.Seconds, ns.Seconds} {
		if len(s) > 0 {
			xmax = math.Max(xmax, float64(s[len(s)-1].T+1))
		}
	}
	col := func(secs []loadtest.Second, f func(*loadtest.Second) float64, has func(*loadtest.Second) bool) []point {
		pts := make([]point, len(secs))
		for i := range secs {
			y := math.NaN()
			if has == nil || has(&secs[i]) {
				y = f(&secs[i])
			}
			pts[i] = point{X: float64(secs[i].T) + 0.5, Y: y}
		}
		return pts
	}
	sent := func(s *loadtest.Second) bool { return s.Sent > 0 }
	delivered := func(s *loadtest.Second) bool { return s.Delivered > 0 }
	mk := func(id, title, ylabel, desc string, ylog bool, lines []line) figure {
		ch := &chart{ID: id, Title: title, Desc: desc, XLabel: timeAxis, YLabel: ylabel, YLog: ylog, XMin: 0, XMax: xmax, Lines: lines, Bands: seriesBands(ns)}
		wide, narrow := ch.render()
		return figure{Title: title, SVG: wide, Narrow: narrow}
	}
	figs := []figure{
		mk("cmp-rate", "Throughput over time", "requests answered 2xx per second", "Requests answered 2xx per second in both runs.", false, []line{
			{Name: bl, Color: 0, Pts: col(bs.Seconds, func(s *loadtest.Second) float64 { return float64(s.OK) }, nil)},
			{Name: nl, Color: 1, Dash: 1, Pts: col(ns.Seconds, func(s *loadtest.Second) float64 { return float64(s.OK) }, nil)},
		}),
		mk("cmp-accept", "Accept latency over time", "latency (ms, log scale)", "Accept latency p50 and p99 per second in both runs.", true, []line{
			{Name: bl + " p50", Color: 0, Pts: col(bs.Seconds, func(s *loadtest.Second) float64 { return s.LatencyMS.P50 }, sent)},
			{Name: bl + " p99", Color: 0, Dash: 1, Pts: col(bs.Seconds, func(s *loadtest.Second) float64 { return s.LatencyMS.P99 }, sent)},
			{Name: nl + " p50", Color: 1, Pts: col(ns.Seconds, func(s *loadtest.Second) float64 { return s.LatencyMS.P50 }, sent)},
			{Name: nl + " p99", Color: 1, Dash: 1, Pts: col(ns.Seconds, func(s *loadtest.Second) float64 { return s.LatencyMS.P99 }, sent)},
		}),
		mk("cmp-e2e", "End-to-end delivery latency over time", "latency (ms, log scale)", "End-to-end latency p50 and p99 per second in both runs.", true, []line{
			{Name: bl + " p50", Color: 0, Pts: col(bs.Seconds, func(s *loadtest.Second) float64 { return s.E2EMS.P50 }, delivered)},
			{Name: bl + " p99", Color: 0, Dash: 1, Pts: col(bs.Seconds, func(s *loadtest.Second) float64 { return s.E2EMS.P99 }, delivered)},
			{Name: nl + " p50", Color: 1, Pts: col(ns.Seconds, func(s *loadtest.Second) float64 { return s.E2EMS.P50 }, delivered)},
			{Name: nl + " p99", Color: 1, Dash: 1, Pts: col(ns.Seconds, func(s *loadtest.Second) float64 { return s.E2EMS.P99 }, delivered)},
		}),
		spectrumFigure("cmp-spectrum", "Latency distribution (percentile spectrum)", []line{
			{Name: bl + " accept", Color: 0, Pts: spectrumPoints(bs.Spectrum)},
			{Name: nl + " accept", Color: 1, Pts: spectrumPoints(ns.Spectrum)},
			{Name: bl + " end to end", Color: 0, Dash: 2, Pts: spectrumPoints(bs.E2ESpectrum)},
			{Name: nl + " end to end", Color: 1, Dash: 2, Pts: spectrumPoints(ns.E2ESpectrum)},
		}, "Latency at each percentile over each whole run: solid lines accept latency, dotted end to end; both axes logarithmic."),
	}
	figs[0].Caption = "Shaded bands are the new run's faults and actions."
	figs[1].Caption = "Solid lines are p50, dashed p99."
	figs[2].Caption = "Solid lines are p50, dashed p99."
	return figs
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

func signedPct(f float64) string {
	if math.Abs(f) < 0.0005 {
		return "0.0%"
	}
	s := strconv.FormatFloat(f*100, 'f', 1, 64) + "%"
	if f > 0 {
		s = "+" + s
	}
	return s
}
