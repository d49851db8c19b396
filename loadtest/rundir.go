package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wxpush/wxpush/mockwx"
)

// The files of a run directory.
const (
	SummaryFile = "summary.json"
	SeriesFile  = "series.json"
	ResultsFile = "results.bin" // vegeta's gob encoding: vegeta report results.bin
	LedgerFile  = "ledger.jsonl"
	ReportFile  = "index.html"
	TextFile    = "summary.txt"
)

// LedgerRecord is one line of ledger.jsonl: a mock ledger entry of this
// run, with its marker.
type LedgerRecord struct {
	Seq          uint64    `json:"seq"`
	ReceivedAt   time.Time `json:"received_at"`
	AppID        string    `json:"appid"`
	ToUser       string    `json:"touser"`
	TemplateID   string    `json:"template_id"`
	ClientMsgID  string    `json:"client_msg_id,omitempty"`
	MsgID        int64     `json:"msgid,omitempty"`
	ErrCode      int       `json:"errcode"`
	Deduplicated bool      `json:"deduplicated"`
	Marker       string    `json:"marker"`
}

func (r *runner) write(acct *accountant, ser Series, hists runHistograms) error {
	dir := r.opts.OutDir
	if err := r.writeLedger(acct); err != nil {
		r.sum.Run.Warnings = append(r.sum.Run.Warnings, "ledger extract: "+err.Error())
	}
	if err := writeHistograms(filepath.Join(dir, HistogramsFile), hists); err != nil {
		return err
	}
	return writeRunDir(dir, &r.sum, ser, r.opts.Render)
}

// writeRunDir writes a run directory's summary.json, series.json,
// summary.txt and report (render, or the plain one when nil).
func writeRunDir(dir string, s *Summary, ser Series, render func(dir string) error) error {
	if err := writeJSON(filepath.Join(dir, SummaryFile), s); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, SeriesFile), &ser); err != nil {
		return err
	}
	text := TextReport(s)
	if err := os.WriteFile(filepath.Join(dir, TextFile), []byte(text), 0o644); err != nil {
		return err
	}
	if render != nil {
		if err := render(dir); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	} else if err := WritePlainReport(dir, s); err != nil {
		return err
	}
	return nil
}

func (r *runner) writeLedger(acct *accountant) error {
	f, err := os.Create(filepath.Join(r.opts.OutDir, LedgerFile))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = r.stack.Mock().AllMessages(ctx, acct.startSeq, func(e mockwx.LedgerEntry) error {
		m, ok := acct.markerOf(e)
		if !ok {
			return nil
		}
		return enc.Encode(LedgerRecord{Seq: e.Seq, ReceivedAt: e.ReceivedAt, AppID: e.AppID, ToUser: e.ToUser, TemplateID: e.TemplateID,
			ClientMsgID: e.ClientMsgID, MsgID: e.MsgID, ErrCode: e.ErrCode, Deduplicated: e.Deduplicated, Marker: m})
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadSummary reads a run directory's summary.json.
func ReadSummary(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return &s, nil
}

// ReadSeries reads a run directory's series.json.
func ReadSeries(dir string) (*Series, error) {
	b, err := os.ReadFile(filepath.Join(dir, SeriesFile))
	if err != nil {
		return nil, err
	}
	var s Series
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SeriesFile), err)
	}
	return &s, nil
}

// TextReport is the run's summary as text, for the terminal and for
// summary.txt.
func TextReport(s *Summary) string {
	var b strings.Builder
	verdict := "PASSED"
	if !s.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "scenario %s: %s\n", s.Scenario, verdict)
	fmt.Fprintf(&b, "  %s\n", s.Description)
	if line := ShardLine(s); line != "" {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	b.WriteString("\n")
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	a := s.Accept
	w("accept     %d requests (%d batches, %d repeats) at %.1f/s; success %.2f%%; replayed %d; errors %d %s",
		a.Requests, a.BatchRequests, a.DuplicateRequests, a.Rate, a.SuccessRatio*100, a.Replayed, a.Errors, fmtMap(a.ErrorKinds))
	w("           latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms", a.LatencyMS.P50, a.LatencyMS.P90, a.LatencyMS.P99, a.LatencyMS.Max)
	d := s.Delivery
	w("delivery   accepted %d: delivered %d, failed %d %s, lost %d; duplicates %d; confirmed by report %d",
		d.Accepted, d.Delivered, d.Failed, fmtMap(d.FailedByReason), d.Lost, d.Duplicates, d.Confirmed)
	w("           end to end (send to WeChat's receipt) p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
		d.E2ELatencyMS.P50, d.E2ELatencyMS.P90, d.E2ELatencyMS.P99, d.E2ELatencyMS.Max)
	confirmed := "none: no delivery report was applied"
	if c := d.ConfirmedLatencyMS; c.Max > 0 {
		confirmed = fmt.Sprintf("p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", c.P50, c.P90, c.P99, c.Max)
	}
	w("           confirmed (send to the delivery report applied) %s; drained in %.1f s%s",
		confirmed, d.DrainSeconds, map[bool]string{true: "", false: " (NOT drained: timeout)"}[d.Drained])
	if len(d.Apps) > 1 {
		names := make([]string, 0, len(d.Apps))
		for n := range d.Apps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f := d.Apps[n]
			w("           app %-10s accepted %d, delivered %d, failed %d, lost %d", n, f.Accepted, f.Delivered, f.Failed, f.Lost)
		}
	}
	m := s.Mock
	w("mock       token calls %d, stable_token calls %d, sends %d (delivered %d, deduplicated %d), answers to the run's sends %s",
		m.TokenCalls, m.StableTokenCalls, m.SendCalls, m.Delivered, m.Deduplicated, fmtMap64(m.SendsByErrcode))
	sv := s.Service
	w("service    (this run) sent %.0f, retries %.0f, reclaimed %.0f, token refreshes %.0f, redis errors %.0f, max queue depth %.0f, instance restarts %d",
		sv.Sent, sv.Retries, sv.Reclaimed, sv.TokenRefreshes, sv.RedisErrors, sv.QueueDepthMax, sv.InstanceRestarts)
	g := s.Generator
	w("generator  target %.1f/s (peak %.0f/s), achieved %.1f/s, lag p99 %.2f ms, self-check %.0f/s, saturated: %v %s",
		g.TargetRate, g.PeakRate, g.AchievedRate, g.LagMS.P99, g.SelfCheckRate, g.Saturated, g.Reason)
	usual := "unknown"
	if g.UsualSelfCheckRate > 0 {
		usual = fmt.Sprintf("%.0f/s", g.UsualSelfCheckRate)
	}
	w("machine    probe p50 %.2f ms, p99 %.2f ms; usual self-check %s; busy: %v %s",
		g.ProbeMS.P50, g.ProbeMS.P99, usual, g.MachineBusy, g.MachineReason)
	for _, ev := range s.Run.Timeline {
		line := fmt.Sprintf("timeline   %6.1fs %s %s", ev.AtSeconds, ev.Action, ev.Detail)
		if ev.Error != "" {
			line += " — ERROR: " + ev.Error
		}
		w("%s", line)
	}
	for _, warn := range s.Run.Warnings {
		w("warning    %s", warn)
	}
	b.WriteString("\nexpectations\n")
	for _, e := range s.Expectations {
		mark := "ok  "
		if !e.Passed {
			mark = "FAIL"
		}
		line := fmt.Sprintf("  %s %s", mark, e.Name)
		if e.Name != e.Expr {
			line += "  [" + e.Expr + "]"
		}
		if e.Value != nil {
			line += fmt.Sprintf("  (measured %v)", e.Value)
		}
		if e.Error != "" {
			line += "  error: " + e.Error
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// ShardLine says which part of a sharded run a summary is: a shard (and
// that the run's verdict is wxload merge's) or the merge of N shards; ""
// for a run that is not sharded.
func ShardLine(s *Summary) string {
	sh := s.Run.Shard
	switch {
	case sh.Count == 0:
		return ""
	case sh.Index < 0:
		return fmt.Sprintf("merged from %d shards of run %s (ledger: %s)", sh.Count, sh.RunID, sh.LedgerSource)
	default:
		return fmt.Sprintf("shard %d/%d of run %s (markers %s-N): its figures are its share of the load; wxload merge gives the run's verdict", sh.Index, sh.Count, sh.RunID, sh.Marker)
	}
}

func fmtMap(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func fmtMap64(m map[string]int64) string {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = int(v)
	}
	if len(c) == 0 {
		return "(none)"
	}
	return fmtMap(c)
}

// WritePlainReport writes index.html as the text report in a page with no
// external reference of any kind.
func WritePlainReport(dir string, s *Summary) error {
	f, err := os.Create(filepath.Join(dir, ReportFile))
	if err != nil {
		return err
	}
	defer f.Close()
	return writePlain(f, s)
}

func writePlain(w io.Writer, s *Summary) error {
	_, err := fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>wxload: %s</title>
<style>body{font:14px/1.5 ui-monospace,monospace;margin:2em;color:#222;background:#fff}@media(prefers-color-scheme:dark){body{color:#ddd;background:#111}}</style>
</head><body><pre>%s</pre></body></html>
`, html.EscapeString(s.Scenario), html.EscapeString(TextReport(s)))
	return err
}
