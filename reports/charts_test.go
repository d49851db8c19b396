package reports

import (
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/wxpush/wxpush/loadtest"
)

// pathOf returns the d attribute of the path titled name in an SVG.
func pathOf(svg, name string) (string, bool) {
	m := regexp.MustCompile(`<path class="c\d d\d" d="([^"]*)"><title>` + regexp.QuoteMeta(name) + `</title>`).FindStringSubmatch(svg)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// legend lists the names a chart's legend shows.
func legend(svg string) []string {
	g := svg[strings.Index(svg, `<g class="legend">`):]
	var names []string
	for _, m := range regexp.MustCompile(`<text x="\d+" y="\d+">([^<]*)</text>`).FindAllStringSubmatch(g, -1) {
		names = append(names, m[1])
	}
	return names
}

// steadyRun is a run of 10 s at 50 requests/s whose load ended at
// attackEnd (one late request in second 10) and whose deliveries went on
// until end.
func steadyRun(attackEnd, end float64) *loadtest.Series {
	ser := &loadtest.Series{AttackEnd: attackEnd, End: end}
	for i := 0; i <= 10; i++ {
		s := loadtest.Second{T: i, TargetRate: 50, Sent: 50, OK: 50, Accepted: 50, Delivered: 50, InstancesUp: 1,
			LatencyMS: loadtest.Percentiles{P50: 1, P99: 5, Max: 9}, E2EMS: loadtest.Percentiles{P50: 2, P99: 8, Max: 12}}
		if i == 10 {
			s.TargetRate, s.Sent, s.OK, s.Accepted, s.Delivered = 0, 1, 1, 1, 1
		}
		ser.Seconds = append(ser.Seconds, s)
	}
	return ser
}

// TestPartialLastSecond: the load's last, partial second is not drawn as
// a collapse: a sliver of a second is left out, half a second or more is
// scaled to a full one.
func TestPartialLastSecond(t *testing.T) {
	for _, tc := range []struct {
		name      string
		attackEnd float64
		points    int     // points of the sent line
		last      float64 // its last value
	}{
		{"a sliver of second 10", 10.02, 10, 50},
		{"half of second 10", 10.5, 11, 2},
		{"an old series without the load's end", 0, 11, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ser := steadyRun(tc.attackEnd, 12)
			s := &loadtest.Summary{}
			figs := timeFigures(ser, nil, runSpan(s, ser))
			sent := countPoints(ser.Seconds, func(s *loadtest.Second) float64 { return float64(s.Sent) }, runSpan(s, ser).attackEnd)
			var drawn []float64
			for _, p := range sent {
				if !math.IsNaN(p.Y) {
					drawn = append(drawn, p.Y)
				}
			}
			if len(drawn) != tc.points || drawn[len(drawn)-1] != tc.last {
				t.Errorf("sent per second %v: want %d points ending at %v", drawn, tc.points, tc.last)
			}
			d, ok := pathOf(string(figs[0].SVG), "sent")
			if !ok {
				t.Fatalf("no sent line in the rate chart")
			}
			if n := strings.Count(d, "L") + 1; n != tc.points {
				t.Errorf("the sent line has %d points, want %d: %s", n, tc.points, d)
			}
		})
	}
}

// TestCoveredSecond: the share of a second a run covered.
func TestCoveredSecond(t *testing.T) {
	for _, tc := range []struct {
		t     int
		until float64
		want  float64
	}{{0, 10, 1}, {9, 10, 1}, {10, 10, 0}, {10, 10.25, 0.25}, {11, 10.25, 0}, {3, 0, 1}} {
		if got := covered(tc.t, tc.until); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("covered(%d, %v) = %v, want %v", tc.t, tc.until, got, tc.want)
		}
	}
}

// TestLegendNamesOnlyDrawnLines: a line with nothing to draw is neither
// drawn nor in the legend, and captions name only drawn series.
func TestLegendNamesOnlyDrawnLines(t *testing.T) {
	nan := []point{{1, math.NaN()}, {2, math.NaN()}}
	zero := []point{{1, 0}, {2, 0}}
	c := &chart{ID: "x", Title: "x", YLog: true, Lines: []line{
		{Name: "real", Pts: []point{{1, 3}, {2, 4}}},
		{Name: "empty", Pts: nan},
		{Name: "zeros on a log axis", Pts: zero},
	}}
	svg := string(c.svg())
	if got := strings.Join(legend(svg), ","); got != "real" {
		t.Errorf("legend %q, want only the drawn line", got)
	}
	if _, ok := pathOf(svg, "empty"); ok {
		t.Error("a line without points was drawn")
	}
	c.YLog = false
	if got := strings.Join(legend(string(c.svg())), ","); got != "real,zeros on a log axis" {
		t.Errorf("linear axis: legend %q, want the zeros too", got)
	}

	// The smoke fixture has no confirmed latency, no retries, no failures:
	// neither captions nor legends name them.
	r, err := Load("testdata/runs/smoke")
	if err != nil {
		t.Fatal(err)
	}
	v := r.view()
	for _, f := range v.Figures {
		page := string(f.SVG) + f.Caption
		for _, absent := range []string{"confirmed p50", "Confirmed:", "Retries:", "Failed:", "retries</text>"} {
			if strings.Contains(page, absent) {
				t.Errorf("figure %q names %q, which it does not draw", f.Title, absent)
			}
		}
	}
	// A series with confirmations names them.
	ser := steadyRun(10.02, 12)
	for i := range ser.Seconds {
		ser.Seconds[i].Confirmed, ser.Seconds[i].ConfirmedMS = 50, loadtest.Percentiles{P50: 40, P99: 90, Max: 100}
	}
	figs := timeFigures(ser, nil, runSpan(&loadtest.Summary{}, ser))
	if e2e := figs[2]; !strings.Contains(e2e.Caption, "Confirmed:") || !strings.Contains(string(e2e.SVG), ">confirmed p99</text>") {
		t.Errorf("the delivery chart with confirmations does not name them: %s", e2e.Caption)
	}
}

// TestNoValuePinnedAtTheFloor: a value under a log axis' floor breaks the
// line and is counted in a note, instead of being drawn at the floor.
func TestNoValuePinnedAtTheFloor(t *testing.T) {
	pts := []point{{1, 1000}, {2, 1e-7}, {3, 500}, {4, 200}}
	c := &chart{ID: "f", Title: "f", YLog: true, Lines: []line{{Name: "l", Pts: pts}}}
	svg := string(c.svg())
	d, ok := pathOf(svg, "l")
	if !ok {
		t.Fatal("no line")
	}
	if strings.Count(d, "M") != 2 || strings.Count(d, "L") != 1 {
		t.Errorf("path %q: want the point under the floor left out (two pieces, one segment)", d)
	}
	if !strings.Contains(svg, "1 point below 0.001 not drawn") {
		t.Errorf("no note about the point under the floor in %s", svg)
	}
	// Data within the axis draws whole, with no note.
	c.Lines[0].Pts = []point{{1, 1000}, {2, 0.25}, {3, 500}}
	svg = string(c.svg())
	if d, _ := pathOf(svg, "l"); strings.Count(d, "M") != 1 || strings.Contains(svg, "not drawn") {
		t.Errorf("path %q of data within the axis is broken or noted", d)
	}
}

// TestErrcodeTableCountsSends: the errcode table counts the mock's answers
// to the run's sends, not its token calls' (500 sends and a token call are
// 500 answers with errcode 0, not 501); a run written before the sends
// were counted shows every answer.
func TestErrcodeTableCountsSends(t *testing.T) {
	s := &loadtest.Summary{}
	s.Mock.ByErrcode = map[string]int64{"0": 501, "45009": 3}
	s.Mock.SendsByErrcode = map[string]int64{"0": 500, "45009": 3}
	s.Service.AttemptsByCode = map[string]float64{"0": 500, "45009": 3}
	rows := codeRows(s)
	if len(rows) != 2 || rows[0].Code != "0" || rows[0].Mock != "500" || rows[1].Mock != "3" {
		t.Errorf("errcode rows %+v: want 0 → 500 and 45009 → 3", rows)
	}
	s.Mock.SendsByErrcode = nil
	if rows := codeRows(s); rows[0].Mock != "501" {
		t.Errorf("an older run's errcode 0: %s, want every answer (501)", rows[0].Mock)
	}
}
