package reports

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/loadtest"
)

// Render writes dir/index.html, the report of the run in dir, from its
// summary.json and series.json. A run without series.json still gets a
// report, without time charts. It has the signature of cli.Render.
func Render(dir string) error {
	r, err := Load(dir)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, loadtest.ReportFile), r)
}

// Report is the HTML report of one run. Its WriteTo writes the page.
type Report struct {
	Summary *loadtest.Summary
	Series  *loadtest.Series // never nil; empty when the run has none
}

var _ io.WriterTo = (*Report)(nil)

// Load reads a run directory's summary.json and, when present,
// series.json.
func Load(dir string) (*Report, error) {
	s, err := loadtest.ReadSummary(dir)
	if err != nil {
		return nil, err
	}
	ser, err := loadtest.ReadSeries(dir)
	if errors.Is(err, fs.ErrNotExist) {
		ser, err = &loadtest.Series{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Report{Summary: s, Series: ser}, nil
}

// WriteTo writes the report as one self-contained HTML page.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	return execute(w, "report", r.view())
}

// writeFile writes a page to path through a buffer, so that a failed
// render leaves no half-written file.
func writeFile(path string, p io.WriterTo) error {
	var buf bytes.Buffer
	if _, err := p.WriteTo(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// kv is one row of a two-column table.
type kv struct {
	K, V string
	Bad  bool // draws attention: lost, duplicates, saturation
}

// card is one headline figure.
type card struct {
	Label, Value, Sub string
	Bad               bool
}

// figure is a chart with its caption.
type figure struct {
	Title   string
	Caption string
	SVG     template.HTML
	Narrow  template.HTML // the chart for phones, when SVG is full width
	Half    bool          // half width: two side by side
}

// expRow is one expectation as the page shows it.
type expRow struct {
	Name, Expr, Value, Error string
	Passed                   bool
}

// latRow is one row of a percentile table.
type latRow struct {
	Name                     string
	P50, P90, P99, Max, Mean string
}

// codeRow is one errcode of the mock's breakdown.
type codeRow struct {
	Code, Meaning, Class     string
	Mock, Share, Attempts    string
	OK                       bool
	MockCount, AttemptsCount float64
}

// bandRow describes one band of the time charts.
type bandRow struct {
	Label, Name, Kind, Start, End string
}

type reportView struct {
	Wide         bool // a wider page, for wide tables
	Title        string
	S            *loadtest.Summary
	Meta         string
	Expectations []expRow
	Cards        []card
	Figures      []figure
	Bands        []bandRow
	Timeline     []loadtest.TimelineEvent
	Accounting   []kv
	Apps         [][]string
	Latency      []latRow
	Spectrum     [][]string
	Codes        []codeRow
	Accept       []kv
	Generator    []kv
	Service      []kv
	Events       []kv       // the users' pushes (load.users); nil without
	EventTypes   [][]string // per event type
	Downsampled  string
	Version      string
}

func (r *Report) view() *reportView {
	s, ser := r.Summary, r.Series
	v := &reportView{Title: "wxload report: " + s.Scenario, S: s, Version: s.Run.Version}
	v.Meta = metaLine(s)
	for _, e := range s.Expectations {
		row := expRow{Name: e.Name, Expr: e.Expr, Passed: e.Passed, Error: e.Error, Value: "—"}
		if e.Value != nil {
			row.Value = fmtAny(e.Value)
		}
		if row.Expr == row.Name {
			row.Expr = ""
		}
		v.Expectations = append(v.Expectations, row)
	}
	a, d, g := s.Accept, s.Delivery, s.Generator
	v.Cards = []card{
		{Label: "requests", Value: fmtInt(a.Requests), Sub: fmt.Sprintf("%s/s offered, %.2f%% ok", fmtRate(a.Rate), a.SuccessRatio*100)},
		{Label: "throughput", Value: fmtRate(a.Throughput) + "/s", Sub: "successful requests"},
		{Label: "accept p99", Value: fmtMS(a.LatencyMS.P99), Sub: "p50 " + fmtMS(a.LatencyMS.P50)},
		{Label: "end-to-end p99", Value: fmtMS(d.E2ELatencyMS.P99), Sub: "send to WeChat, p50 " + fmtMS(d.E2ELatencyMS.P50)},
		confirmedCard(d),
		{Label: "delivered", Value: fmtInt(d.Delivered), Sub: "of " + fmtInt(d.Accepted) + " accepted"},
		{Label: "failed", Value: fmtInt(d.Failed), Sub: "reported failed"},
		{Label: "lost", Value: fmtInt(d.Lost), Bad: d.Lost > 0, Sub: "neither delivered nor failed"},
		{Label: "duplicates", Value: fmtInt(d.Duplicates), Bad: d.Duplicates > 0, Sub: "delivered twice or more"},
	}
	if g.Saturated {
		v.Cards = append(v.Cards, card{Label: "generator", Value: "saturated", Bad: true, Sub: g.Reason})
	}
	if g.MachineBusy {
		v.Cards = append(v.Cards, card{Label: "machine", Value: "busy", Sub: g.MachineReason})
	}

	bands := seriesBands(ser)
	for _, b := range bands {
		v.Bands = append(v.Bands, bandRow{Label: b.Label, Name: b.Title, Kind: b.Kind, Start: fmtSec(b.Start), End: fmtSec(b.End)})
	}
	v.Timeline = s.Run.Timeline
	v.Figures = timeFigures(ser, bands, runSpan(s, ser))
	spectra := []line{
		{Name: "accept", Color: 0, Pts: spectrumPoints(ser.Spectrum)},
		{Name: "end to end", Color: 1, Dash: 1, Pts: spectrumPoints(ser.E2ESpectrum)},
		{Name: "confirmed", Color: 2, Dash: 2, Pts: spectrumPoints(ser.ConfirmedSpectrum)},
	}
	v.Figures = append(v.Figures, spectrumFigure("spectrum", "Latency distribution (percentile spectrum)", spectra,
		"Latency at each percentile over the whole run: "+describeLines(spectra, true, map[string]string{
			"accept":     "accept (the API's answer)",
			"end to end": "end to end (scheduled send to WeChat's receipt)",
			"confirmed":  "confirmed (scheduled send to the delivery report's application)",
		})+"; both axes logarithmic, so the tail is as visible as the median."))
	if n := len(ser.Seconds); n > maxPoints {
		v.Downsampled = fmt.Sprintf("The run lasted %d seconds; each chart line is downsampled to at most %d points (largest-triangle-three-buckets, which keeps peaks). series.json has every second.", n, maxPoints)
	}

	v.Accounting = []kv{
		{K: "accepted", V: fmtInt(d.Accepted)},
		{K: "delivered", V: fmtInt(d.Delivered)},
		{K: "failed", V: fmtInt(d.Failed)},
	}
	for _, k := range sortedKeys(d.FailedByReason) {
		v.Accounting = append(v.Accounting, kv{K: "  failed: " + k, V: fmtInt(d.FailedByReason[k])})
	}
	v.Accounting = append(v.Accounting,
		kv{K: "lost", V: fmtInt(d.Lost), Bad: d.Lost > 0},
		kv{K: "duplicates", V: fmtInt(d.Duplicates), Bad: d.Duplicates > 0},
		kv{K: "confirmed by delivery report", V: fmtInt(d.Confirmed)},
		kv{K: "statuses checked", V: fmtInt(d.StatusChecked)},
		kv{K: "unattributed ledger entries", V: fmtInt(d.Unattributed)},
		kv{K: "drain time", V: fmt.Sprintf("%.1f s", d.DrainSeconds)},
		kv{K: "drained", V: yesNo(d.Drained), Bad: !d.Drained},
	)
	if len(d.Apps) > 1 {
		for _, name := range sortedKeys(d.Apps) {
			f := d.Apps[name]
			v.Apps = append(v.Apps, []string{name, fmtInt(f.Accepted), fmtInt(f.Delivered), fmtInt(f.Failed), fmtInt(f.Lost)})
		}
	}
	v.Latency = []latRow{
		latencyRow("accept (API answer)", a.LatencyMS),
		latencyRow("end to end (send to WeChat's receipt)", d.E2ELatencyMS),
		latencyRow("confirmed (send to the delivery report applied)", d.ConfirmedLatencyMS),
		latencyRow("generator lag (sent minus due)", g.LagMS),
		latencyRow("machine probe (a trivial loopback request)", g.ProbeMS),
	}
	v.Spectrum = spectrumTable(ser)
	v.Codes = codeRows(s)
	v.Accept = []kv{
		{K: "requests", V: fmtInt(a.Requests)},
		{K: "messages in them", V: fmtInt(a.Messages)},
		{K: "batch requests", V: fmtInt(a.BatchRequests)},
		{K: "request rate", V: fmtRate(a.Rate) + "/s"},
		{K: "throughput (successful)", V: fmtRate(a.Throughput) + "/s"},
		{K: "success ratio", V: fmt.Sprintf("%.4f", a.SuccessRatio)},
		{K: "status codes", V: fmtCounts(a.StatusCodes)},
		{K: "errors", V: fmtInt(a.Errors) + " " + fmtCounts(a.ErrorKinds), Bad: a.Errors > 0},
		{K: "replayed (Idempotent-Replayed)", V: fmtInt(a.Replayed)},
		{K: "requests repeating a key", V: fmtInt(a.DuplicateRequests)},
		{K: "batch items refused", V: fmtInt(a.ItemErrors)},
	}
	v.Generator = []kv{
		{K: "target rate (mean)", V: fmtRate(g.TargetRate) + "/s"},
		{K: "peak target rate", V: fmtRate(g.PeakRate) + "/s"},
		{K: "achieved rate", V: fmtRate(g.AchievedRate) + "/s"},
		{K: "self-check rate (no service)", V: fmtRate(g.SelfCheckRate) + "/s"},
		{K: "scheduling lag p99", V: fmtMS(g.LagMS.P99)},
		{K: "saturated (could not keep up)", V: yesNo(g.Saturated) + " " + g.Reason, Bad: g.Saturated},
		{K: "usual self-check rate", V: usualRate(g)},
		{K: "machine probe p99", V: fmtMS(g.ProbeMS.P99)},
		{K: "machine busy", V: yesNo(g.MachineBusy) + " " + g.MachineReason},
	}
	v.Events, v.EventTypes = eventsView(s.Events)
	sv := s.Service
	v.Service = []kv{
		{K: "accepted", V: fmtF(sv.Accepted)},
		{K: "sent", V: fmtF(sv.Sent)},
		{K: "failed", V: fmtF(sv.Failed)},
		{K: "retries", V: fmtF(sv.Retries)},
		{K: "reclaimed", V: fmtF(sv.Reclaimed)},
		{K: "token refreshes", V: fmtF(sv.TokenRefreshes)},
		{K: "Redis errors", V: fmtF(sv.RedisErrors), Bad: sv.RedisErrors > 0},
		{K: "queue depth (max)", V: fmtF(sv.QueueDepthMax)},
		{K: "instances seen up", V: strconv.Itoa(sv.InstancesSeenUp)},
		{K: "instance restarts", V: strconv.Itoa(sv.InstanceRestarts)},
		{K: "metric scrape failures", V: strconv.Itoa(sv.ScrapeFailures)},
		{K: "mock: token calls", V: strconv.FormatInt(s.Mock.TokenCalls+s.Mock.StableTokenCalls, 10)},
		{K: "mock: send calls", V: strconv.FormatInt(s.Mock.SendCalls, 10)},
		{K: "mock: faults fired", V: strconv.FormatInt(s.Mock.FaultsFired, 10)},
		{K: "mock: callbacks sent / acked / failed", V: fmt.Sprintf("%d / %d / %d", s.Mock.CallbacksSent, s.Mock.CallbacksAcked, s.Mock.CallbacksFailed)},
	}
	return v
}

// confirmedCard is the confirmed latency's headline, or why there is none.
func confirmedCard(d loadtest.Delivery) card {
	if d.ConfirmedLatencyMS.Max <= 0 {
		return card{Label: "confirmed p99", Value: "—", Sub: "no delivery report applied"}
	}
	return card{Label: "confirmed p99", Value: fmtMS(d.ConfirmedLatencyMS.P99), Sub: "send to delivery report, p50 " + fmtMS(d.ConfirmedLatencyMS.P50)}
}

// usualRate is the machine's usual self-check rate, or why it is unknown.
func usualRate(g loadtest.Generator) string {
	if g.UsualSelfCheckRate <= 0 {
		return "unknown (no history of this machine)"
	}
	return fmt.Sprintf("%s/s (this run %.0f%%)", fmtRate(g.UsualSelfCheckRate), 100*g.SelfCheckRatio)
}

// eventsView is the accounting of the simulated users' pushes.
func eventsView(e loadtest.Events) ([]kv, [][]string) {
	if !e.Enabled {
		return nil, nil
	}
	rows := []kv{
		{K: "pushed", V: fmtInt(e.Pushed)},
		{K: "acknowledged (success or empty)", V: fmtInt(e.Acked)},
		{K: "replied (a valid passive reply)", V: fmtInt(e.Replied)},
		{K: "reply shown to the user as an error", V: fmtInt(e.ReplyInvalid), Bad: e.ReplyInvalid > 0},
		{K: "no answer after WeChat's tries", V: fmtInt(e.Failed), Bad: e.Failed > 0},
		{K: "no outcome yet", V: fmtInt(e.Pending), Bad: e.Pending > 0},
		{K: "reply not the configured one", V: fmtInt(e.RepliesWrong), Bad: e.RepliesWrong > 0},
		{K: "pushed more than once by the mock", V: fmtInt(e.Retried)},
	}
	if w := e.Webhook; w != nil {
		rows = append(rows,
			kv{K: "forwarded once", V: fmtInt(e.ForwardedOnce)},
			kv{K: "forwarded under two delivery ids", V: fmtInt(e.ForwardedTwice), Bad: e.ForwardedTwice > 0},
			kv{K: "answered but never forwarded (lost)", V: fmtInt(e.Lost), Bad: e.Lost > 0},
			kv{K: "webhook receipts / delivery ids / redelivered", V: fmt.Sprintf("%d / %d / %d", w.Receipts, w.DeliveryIDs, w.Redelivered)},
			kv{K: "bad signatures", V: fmtInt(w.BadSignatures), Bad: w.BadSignatures > 0},
			kv{K: "out of order per user", V: fmtInt(w.OutOfOrder), Bad: w.OutOfOrder > 0},
		)
	}
	if e.Unfollowed > 0 {
		rows = append(rows,
			kv{K: "users who unfollowed", V: fmtInt(e.Unfollowed)},
			kv{K: "sends to them after the service knew", V: fmtInt(e.SendsToUnfollowed), Bad: e.SendsToUnfollowed > 0},
			kv{K: "sends to them before it knew (43004)", V: fmtInt(e.SendsBeforeServiceKnew)},
			kv{K: "sends to them after they followed again", V: fmtInt(e.SendsAfterRefollow)},
		)
	}
	if e.Skipped > 0 || e.PushErrors > 0 {
		rows = append(rows, kv{K: "events not pushed (no free user / mock errors)", V: fmt.Sprintf("%d / %d %s", e.Skipped, e.PushErrors, e.FirstPushError), Bad: e.PushErrors > 0})
	}
	var types [][]string
	for _, t := range sortedKeys(e.ByType) {
		f := e.ByType[t]
		types = append(types, []string{t, fmtInt(f.Pushed), fmtInt(f.Acked), fmtInt(f.Replied), fmtInt(f.ReplyInvalid + f.Failed + f.Pending),
			fmtInt(f.ForwardedOnce), fmtInt(f.ForwardedTwice), fmtInt(f.Lost)})
	}
	return rows, types
}

// metaLine is the run metadata in one line.
func metaLine(s *loadtest.Summary) string {
	r := s.Run
	parts := []string{}
	if line := loadtest.ShardLine(s); line != "" {
		parts = append(parts, line)
	}
	if !r.Started.IsZero() {
		parts = append(parts, "started "+r.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	parts = append(parts, fmt.Sprintf("load %.1f s", r.DurationSeconds))
	if !r.Started.IsZero() && !r.Finished.IsZero() {
		parts = append(parts, fmt.Sprintf("run %.1f s", r.Finished.Sub(r.Started).Seconds()))
	}
	stack := r.Mode + " stack"
	if r.Instances > 0 {
		stack += fmt.Sprintf(", %d wxpushd instance%s", r.Instances, plural(r.Instances))
	}
	if r.Redis != "" {
		stack += ", Redis " + r.Redis
	}
	parts = append(parts, stack, fmt.Sprintf("seed %d", r.Seed))
	if r.Version != "" {
		parts = append(parts, "wxload "+r.Version)
	}
	if r.GoVersion != "" {
		parts = append(parts, r.GoVersion)
	}
	if r.Cores > 0 {
		parts = append(parts, fmt.Sprintf("%d core%s", r.Cores, plural(r.Cores)))
	}
	return strings.Join(parts, " · ")
}

// seriesBands labels the series' bands F1, F2, ... in order of start.
func seriesBands(ser *loadtest.Series) []band {
	bs := append([]loadtest.Band(nil), ser.Bands...)
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].Start < bs[j].Start })
	out := make([]band, len(bs))
	for i, b := range bs {
		out[i] = band{Label: fmt.Sprintf("F%d", i+1), Title: fmt.Sprintf("F%d %s (%s, %s–%s s)", i+1, b.Name, b.Kind, fmtSec(b.Start), fmtSec(b.End)),
			Kind: b.Kind, Start: b.Start, End: b.End}
	}
	return out
}

// timeAxis is the x axis every time chart shares.
const timeAxis = "time since the start of the load (s)"

// span is when a run's load ended and when its figures end, in seconds
// since the start of the load.
type span struct{ attackEnd, end float64 }

// runSpan reads the span from the series, or, for a series written before
// it had one, from the summary and the last second.
func runSpan(s *loadtest.Summary, ser *loadtest.Series) span {
	sp := span{attackEnd: ser.AttackEnd, end: ser.End}
	if sp.attackEnd <= 0 {
		sp.attackEnd = s.Run.DurationSeconds
	}
	if sp.end <= 0 && len(ser.Seconds) > 0 {
		sp.end = float64(ser.Seconds[len(ser.Seconds)-1].T + 1)
	}
	return sp
}

// covered is the share of second t that the run covered up to until: 1
// for a whole second, less for the last, partial one.
func covered(t int, until float64) float64 {
	if until <= 0 {
		return 1
	}
	return math.Max(0, math.Min(1, until-float64(t)))
}

// minCover is the least share of a second a count per second is drawn
// for: a partial last second is scaled to a full one, and left out below
// this (too little of the second to say anything).
const minCover = 0.5

// countPoints are a count per second over the seconds up to until (0:
// all), each drawn at its middle: the last, partial second scaled to a
// full one, or left out below minCover.
func countPoints(secs []loadtest.Second, f func(*loadtest.Second) float64, until float64) []point {
	pts := make([]point, len(secs))
	for i := range secs {
		y := math.NaN()
		if c := covered(secs[i].T, until); c >= minCover {
			y = f(&secs[i]) / c
		}
		pts[i] = point{X: float64(secs[i].T) + 0.5, Y: y}
	}
	return pts
}

// describeLines joins what each drawable line shows, in the lines' order:
// a caption names only the series that are drawn.
func describeLines(lines []line, ylog bool, what map[string]string) string {
	var parts []string
	for _, l := range lines {
		if w, ok := what[l.Name]; ok && l.drawable(ylog) {
			parts = append(parts, w)
		}
	}
	return strings.Join(parts, "; ")
}

// timeFigures are the charts over time. A second's figures are drawn at
// its middle. Counts per second of the load (sent, answered, accepted)
// end with the load, those of outcomes (delivered, failed, errcodes) with
// the run; the last, partial second of each is scaled to a full second
// (or left out when less than half of it ran), so the end of the load is
// not drawn as a collapse.
func timeFigures(ser *loadtest.Series, bands []band, sp span) []figure {
	secs := ser.Seconds
	if len(secs) == 0 {
		return []figure{{Title: "Charts over time", Caption: "This run has no series.json: no charts over time."}}
	}
	xmax := float64(secs[len(secs)-1].T + 1)
	for _, b := range bands {
		xmax = math.Max(xmax, math.Min(b.End, xmax*1.5))
	}
	col := func(f func(*loadtest.Second) float64) []point {
		pts := make([]point, len(secs))
		for i := range secs {
			pts[i] = point{X: float64(secs[i].T) + 0.5, Y: f(&secs[i])}
		}
		return pts
	}
	load := func(f func(*loadtest.Second) float64) []point { return countPoints(secs, f, sp.attackEnd) }
	run := func(f func(*loadtest.Second) float64) []point { return countPoints(secs, f, sp.end) }
	// Latency of a second without requests is no data, not zero.
	lat := func(f func(*loadtest.Second) float64, has func(*loadtest.Second) bool) []point {
		return col(func(s *loadtest.Second) float64 {
			if !has(s) {
				return math.NaN()
			}
			return f(s)
		})
	}
	sent := func(s *loadtest.Second) bool { return s.Sent > 0 }
	delivered := func(s *loadtest.Second) bool { return s.Delivered > 0 && s.E2EMS.Max > 0 }
	confirmed := func(s *loadtest.Second) bool { return s.Confirmed > 0 && s.ConfirmedMS.Max > 0 }
	mk := func(id, title, ylabel, desc string, ylog bool, lines []line) *chart {
		return &chart{ID: id, Title: title, Desc: desc, XLabel: timeAxis, YLabel: ylabel, YLog: ylog,
			XMin: 0, XMax: xmax, Lines: lines, Bands: bands, Mark: sp.attackEnd, MarkLabel: "end of load"}
	}
	var figs []figure
	add := func(c *chart, caption string, half bool) {
		if half {
			c.W, c.H = 480, 280
		}
		wide, narrow := c.render()
		figs = append(figs, figure{Title: c.Title, Caption: caption, SVG: wide, Narrow: narrow, Half: half})
	}

	rate := []line{
		{Name: "target", Color: 6, Dash: 1, Pts: load(func(s *loadtest.Second) float64 { return s.TargetRate })},
		{Name: "sent", Color: 0, Pts: load(func(s *loadtest.Second) float64 { return float64(s.Sent) })},
		{Name: "answered 2xx", Color: 2, Dash: 2, Pts: load(func(s *loadtest.Second) float64 { return float64(s.OK) })},
	}
	add(mk("rate", "Request rate: target and achieved", "requests per second", "Target rate of the schedule, requests sent and requests answered 2xx, per second of the load.", false, rate),
		"An open-model generator sends on schedule whatever the service does: sent below target means the generator fell behind, 2xx below sent means the service refused or failed requests. The load's last, partial second is scaled to a full second.", false)

	pct := func(get func(*loadtest.Second) loadtest.Percentiles, has func(*loadtest.Second) bool) []line {
		return []line{
			{Name: "p50", Color: 0, Pts: lat(func(s *loadtest.Second) float64 { return get(s).P50 }, has)},
			{Name: "p90", Color: 2, Dash: 3, Pts: lat(func(s *loadtest.Second) float64 { return get(s).P90 }, has)},
			{Name: "p99", Color: 1, Dash: 1, Pts: lat(func(s *loadtest.Second) float64 { return get(s).P99 }, has)},
			{Name: "max", Color: 4, Dash: 2, Pts: lat(func(s *loadtest.Second) float64 { return get(s).Max }, has)},
		}
	}
	add(mk("accept-latency", "Accept latency over time", "latency (ms, log scale)",
		"Percentiles of the API's answer time for the requests started in each second.", true,
		pct(func(s *loadtest.Second) loadtest.Percentiles { return s.LatencyMS }, sent)),
		"Time from the moment a request left the generator to the API's answer, by the second the request started in (the generator's lag behind its schedule is in the generator table).", false)
	e2e := []line{
		{Name: "end to end p50", Color: 0, Pts: lat(func(s *loadtest.Second) float64 { return s.E2EMS.P50 }, delivered)},
		{Name: "end to end p99", Color: 1, Dash: 1, Pts: lat(func(s *loadtest.Second) float64 { return s.E2EMS.P99 }, delivered)},
		{Name: "end to end max", Color: 4, Dash: 2, Pts: lat(func(s *loadtest.Second) float64 { return s.E2EMS.Max }, delivered)},
		{Name: "confirmed p50", Color: 2, Dash: 3, Pts: lat(func(s *loadtest.Second) float64 { return s.ConfirmedMS.P50 }, confirmed)},
		{Name: "confirmed p99", Color: 3, Dash: 1, Pts: lat(func(s *loadtest.Second) float64 { return s.ConfirmedMS.P99 }, confirmed)},
	}
	e2eWhat := map[string]string{
		"end to end p50": "End to end: from a message's scheduled send to the mock WeChat's receipt, by the second of receipt (waits for quota, retries and token refreshes show here)",
		"confirmed p50":  "Confirmed: from the same send to the service applying WeChat's delivery report, by the second it was applied",
	}
	add(mk("e2e-latency", "Delivery latency over time", "latency (ms, log scale)",
		"Percentiles of the time from the scheduled send to WeChat's receipt, and to the delivery report's application, by the second each happened.", true, e2e),
		describeLines(e2e, true, e2eWhat)+".", false)

	// Outcomes: the fixed ones, then each errcode other than 0.
	outcomes := []line{
		{Name: "accepted", Color: 0, Pts: load(func(s *loadtest.Second) float64 { return float64(s.Accepted) })},
		{Name: "delivered", Color: 2, Dash: 1, Pts: run(func(s *loadtest.Second) float64 { return float64(s.Delivered) })},
		{Name: "API errors", Color: 4, Dash: 2, Pts: load(func(s *loadtest.Second) float64 { return float64(s.Errors) })},
	}
	if anySecond(secs, func(s *loadtest.Second) bool { return s.Failed > 0 }) {
		outcomes = append(outcomes, line{Name: "failed", Color: 5, Dash: 2, Pts: run(func(s *loadtest.Second) float64 { return float64(s.Failed) })})
	}
	if anySecond(secs, func(s *loadtest.Second) bool { return s.Replayed > 0 }) {
		outcomes = append(outcomes, line{Name: "replayed", Color: 5, Dash: 3, Pts: load(func(s *loadtest.Second) float64 { return float64(s.Replayed) })})
	}
	if anySecond(secs, func(s *loadtest.Second) bool { return s.Retries > 0 }) {
		prev := 0.0
		outcomes = append(outcomes, line{Name: "retries", Color: 6, Dash: 3, Pts: run(func(s *loadtest.Second) float64 {
			d := math.Max(s.Retries-prev, 0)
			prev = s.Retries
			return d
		})})
	}
	codes := map[string]bool{}
	for i := range secs {
		for c := range secs[i].MockErrcodes {
			if c != "0" {
				codes[c] = true
			}
		}
	}
	outWhat := map[string]string{
		"accepted":   "Accepted: new messages acknowledged by the API",
		"delivered":  "Delivered: first deliveries WeChat received",
		"API errors": "API errors: requests refused or failed",
		"failed":     "Failed: messages the service reported failed",
		"replayed":   "Replayed: answers from an idempotency key",
		"retries":    "Retries: sends the service repeated (from its metrics)",
	}
	for i, c := range sortedKeys(codes) {
		name := "mock errcode " + c
		outcomes = append(outcomes, line{Name: name, Color: []int{3, 1, 5, 7}[i%4], Dash: (i + 1) % 4, Pts: run(func(s *loadtest.Second) float64 { return float64(s.MockErrcodes[c]) })})
		if i == 0 {
			outWhat[name] = "Mock errcodes: the mock's non-zero answers to sends, by code"
		}
	}
	names := make([]string, 0, len(outcomes))
	for _, l := range outcomes {
		names = append(names, l.Name)
	}
	add(mk("outcomes", "Outcomes over time", "count per second",
		"Per second: "+strings.Join(names, ", ")+".", false, outcomes),
		describeLines(outcomes, false, outWhat)+". Counts of the load end with it, outcomes with the run; a last, partial second is scaled to a full second.", false)

	queue := mk("queue", "Queue depth", "messages waiting", "Messages waiting in the service's queue, sampled from its metrics every second.", false, []line{
		{Name: "queue depth", Color: 0, Pts: col(func(s *loadtest.Second) float64 { return s.QueueDepth })},
	})
	queue.YInt = true
	add(queue, "The shared queue, as the instances report it; a sample is carried forward when a scrape is missing.", true)
	tokens := mk("tokens", "Token refreshes and instances", "count", "Access-token refreshes since the start of the load and instances answering their metrics.", false, []line{
		{Name: "token refreshes (cumulative)", Color: 1, Pts: col(func(s *loadtest.Second) float64 { return s.TokenRefreshes })},
		{Name: "instances up", Color: 2, Dash: 1, Pts: col(func(s *loadtest.Second) float64 { return float64(s.InstancesUp) })},
	})
	tokens.YInt = true
	add(tokens, "Refreshes count from the start of the load, and a killed instance's count is kept, so the line never goes down: a refresh storm shows as a steep step. An instance that dies shows as a drop of instances up.", true)
	return figs
}

// spectrumX maps a percentile to the spectrum's x axis, 1/(1-p): 50% is
// 2, 90% is 10, 99% is 100. 100% has no place on it.
func spectrumX(p float64) float64 { return 1 / (1 - p/100) }

// spectrumPoints are the points of a spectrum below 100%.
func spectrumPoints(sp []loadtest.SpectrumPoint) []point {
	var pts []point
	for _, p := range sp {
		if p.Percentile >= 100 {
			continue
		}
		pts = append(pts, point{X: spectrumX(p.Percentile), Y: p.MS})
	}
	return pts
}

// spectrumFigure draws percentile spectra on log axes.
func spectrumFigure(id, title string, lines []line, caption string) figure {
	xmax := 10.0
	for _, l := range lines {
		for _, p := range l.Pts {
			xmax = math.Max(xmax, p.X)
		}
	}
	var ticks []tick
	for _, p := range []float64{0, 50, 90, 99, 99.9, 99.99, 99.999, 99.9999} {
		if x := spectrumX(p); x <= xmax*1.0001 {
			ticks = append(ticks, tick{V: x, Label: trim(p, 4) + "%"})
		}
	}
	c := &chart{ID: id, Title: title, Desc: "Latency at each percentile; x is 1/(1-p) on a log scale, y is milliseconds on a log scale.",
		XLabel: "percentile (log scale of 1/(1−p))", YLabel: "latency (ms, log scale)", XLog: true, YLog: true,
		XTicks: ticks, Lines: lines}
	wide, narrow := c.render()
	return figure{Title: title, Caption: caption, SVG: wide, Narrow: narrow}
}

func anySecond(secs []loadtest.Second, f func(*loadtest.Second) bool) bool {
	for i := range secs {
		if f(&secs[i]) {
			return true
		}
	}
	return false
}

func latencyRow(name string, p loadtest.Percentiles) latRow {
	return latRow{Name: name, P50: fmtMS(p.P50), P90: fmtMS(p.P90), P99: fmtMS(p.P99), Max: fmtMS(p.Max), Mean: fmtMS(p.Mean)}
}

// spectrumTable lists the spectra's percentiles side by side: accept,
// end to end and confirmed.
func spectrumTable(ser *loadtest.Series) [][]string {
	index := func(sp []loadtest.SpectrumPoint) map[float64]float64 {
		m := map[float64]float64{}
		for _, p := range sp {
			m[p.Percentile] = p.MS
		}
		return m
	}
	e2e, conf := index(ser.E2ESpectrum), index(ser.ConfirmedSpectrum)
	var rows [][]string
	for _, p := range ser.Spectrum {
		row := []string{trim(p.Percentile, 4) + "%", fmtMS(p.MS), "—", "—"}
		if v, ok := e2e[p.Percentile]; ok {
			row[2] = fmtMS(v)
		}
		if v, ok := conf[p.Percentile]; ok {
			row[3] = fmtMS(v)
		}
		rows = append(rows, row)
	}
	return rows
}

// codeRows is the errcode breakdown: the mock's answers and the service's
// attempts, with the taxonomy's meaning.
func codeRows(s *loadtest.Summary) []codeRow {
	all := map[string]bool{}
	var total float64
	// The answers to the run's sends; a run written before they were
	// counted has only every answer of the mock (token calls included).
	mock := s.Mock.SendsByErrcode
	if len(mock) == 0 {
		mock = s.Mock.ByErrcode
	}
	for c, n := range mock {
		all[c] = true
		total += float64(n)
	}
	for c := range s.Service.AttemptsByCode {
		all[c] = true
	}
	keys := sortedKeys(all)
	sort.SliceStable(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return keys[i] < keys[j]
	})
	var rows []codeRow
	for _, c := range keys {
		row := codeRow{Code: c, Mock: "—", Attempts: "—", Share: "—"}
		if n, err := strconv.Atoi(c); err == nil {
			info := wechat.Lookup(n)
			row.Meaning, row.Class, row.OK = info.Meaning, info.Class.String(), n == 0
		}
		if n, ok := mock[c]; ok {
			row.Mock, row.MockCount = fmtInt(int(n)), float64(n)
			if total > 0 {
				row.Share = fmt.Sprintf("%.1f%%", 100*float64(n)/total)
			}
		}
		if n, ok := s.Service.AttemptsByCode[c]; ok {
			row.Attempts, row.AttemptsCount = fmtF(n), n
		}
		rows = append(rows, row)
	}
	return rows
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fmtInt formats an integer with thin-space thousands separators.
func fmtInt(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtF formats a count held in a float.
func fmtF(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmtInt(int(v))
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// fmtRate formats a rate per second.
func fmtRate(v float64) string {
	if v >= 100 {
		return fmtF(math.Round(v))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fmtMS formats milliseconds with three significant digits, in seconds
// from 1 s up.
func fmtMS(v float64) string {
	switch {
	case v >= 10000:
		return strconv.FormatFloat(v/1000, 'f', 1, 64) + " s"
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + " s"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	}
}

func fmtSec(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// fmtAny formats an expectation's measured value.
func fmtAny(v any) string {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', 6, 64)
	case string:
		return strconv.Quote(x)
	default:
		return fmt.Sprint(x)
	}
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %s", k, fmtInt(m[k])))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// fmtTime formats a run's start for lists.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04")
}
