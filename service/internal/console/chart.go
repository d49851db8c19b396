package console

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wxpush/wxpush/service"
)

// Chart geometry, in SVG user units: the plot sits inside the margins.
const (
	chartWidth   = 960
	chartHeight  = 220
	chartLeft    = 52
	chartRight   = 12
	chartTop     = 12
	chartBottom  = 26
	maxFailLines = 6 // reasons drawn by name; the rest are summed as "other"
)

// chart is one server-rendered SVG line chart of per-minute counts.
type chart struct {
	ID     string // the element id, for aria-labelledby
	Title  string
	Width  int
	Height int
	Series []series
	YTicks []tick
	XTicks []tick
	Plot   plot
	Empty  bool // no minute had a count
}

// plot is a chart's plot area, and where its axis labels go.
type plot struct {
	X0, X1, Y0, Y1 float64 // the area's edges
	W, H           float64
	YLabelX        float64 // right edge of the count labels
	XLabelY        float64 // baseline of the time labels
}

// series is one line of a chart.
type series struct {
	Name     string
	Class    string // the CSS class that colours it
	Points   string // the SVG polyline's points
	LastHour int64
	Total    int64
}

// tick is an axis label at Pos (x for the time axis, y for the counts).
type tick struct {
	Pos  float64
	Text string
}

// buildCharts draws the overview's two charts from the per-minute counts:
// messages (accepted, sent, delivered, redriven) and failures by reason.
func buildCharts(minutes []service.Counts) []chart {
	failed := map[string]int64{}
	for _, m := range minutes {
		for r, n := range m.Failed {
			failed[r] += n
		}
	}
	reasons := make([]string, 0, len(failed))
	for r := range failed {
		reasons = append(reasons, r)
	}
	// Biggest first; ties by name, so the colours do not dance.
	slices.SortFunc(reasons, func(a, b string) int {
		return cmp.Or(cmp.Compare(failed[b], failed[a]), cmp.Compare(a, b))
	})
	type line struct {
		name, class string
		at          func(service.Counts) int64
	}
	flow := []line{
		{"accepted", "s-accepted", func(c service.Counts) int64 { return c.Accepted }},
		{"sent", "s-sent", func(c service.Counts) int64 { return c.Sent }},
		{"delivered", "s-delivered", func(c service.Counts) int64 { return c.Delivered }},
		{"redriven", "s-redriven", func(c service.Counts) int64 { return c.Redriven }},
	}
	var fails []line
	for i, r := range reasons {
		if i == maxFailLines-1 && len(reasons) > maxFailLines {
			rest := reasons[i:]
			fails = append(fails, line{"other", "s-r" + strconv.Itoa(i), func(c service.Counts) int64 {
				var n int64
				for _, r := range rest {
					n += c.Failed[r]
				}
				return n
			}})
			break
		}
		fails = append(fails, line{r, "s-r" + strconv.Itoa(i), func(c service.Counts) int64 { return c.Failed[r] }})
	}
	draw := func(id, title string, lines []line) chart {
		ch := chart{ID: id, Title: title, Width: chartWidth, Height: chartHeight}
		ch.Plot.X0, ch.Plot.X1 = chartLeft, chartWidth-chartRight
		ch.Plot.Y0, ch.Plot.Y1 = chartTop, chartHeight-chartBottom
		ch.Plot.W, ch.Plot.H = ch.Plot.X1-ch.Plot.X0, ch.Plot.Y1-ch.Plot.Y0
		ch.Plot.YLabelX, ch.Plot.XLabelY = ch.Plot.X0-6, ch.Plot.Y1+16
		var peak int64
		for _, l := range lines {
			for _, m := range minutes {
				peak = max(peak, l.at(m))
			}
		}
		ch.Empty = peak == 0
		top := niceCeil(peak)
		x := func(i int) float64 {
			if len(minutes) < 2 {
				return ch.Plot.X0
			}
			return ch.Plot.X0 + float64(i)*(ch.Plot.X1-ch.Plot.X0)/float64(len(minutes)-1)
		}
		y := func(v int64) float64 {
			return ch.Plot.Y1 - float64(v)/float64(top)*(ch.Plot.Y1-ch.Plot.Y0)
		}
		marks := []int64{0, top}
		if top >= 2 {
			marks = []int64{0, top / 2, top}
		}
		for _, v := range marks {
			ch.YTicks = append(ch.YTicks, tick{Pos: y(v), Text: strconv.FormatInt(v, 10)})
		}
		for i, m := range minutes {
			t := m.Minute.UTC()
			if t.Minute() == 0 && t.Hour()%3 == 0 {
				ch.XTicks = append(ch.XTicks, tick{Pos: x(i), Text: t.Format("15:04")})
			}
		}
		hourFrom := len(minutes) - 60
		for _, l := range lines {
			s := series{Name: l.name, Class: l.class}
			var pts strings.Builder
			for i, m := range minutes {
				v := l.at(m)
				s.Total += v
				if i >= hourFrom {
					s.LastHour += v
				}
				if i > 0 {
					pts.WriteByte(' ')
				}
				fmt.Fprintf(&pts, "%.1f,%.1f", x(i), y(v))
			}
			s.Points = pts.String()
			ch.Series = append(ch.Series, s)
		}
		return ch
	}
	return []chart{
		draw("chart-flow", "Messages per minute, last 24 hours (UTC)", flow),
		draw("chart-failed", "Failures per minute by reason, last 24 hours (UTC)", fails),
	}
}

// niceCeil returns the smallest of 1, 2, 5 times a power of ten that is
// at least v (at least 1), so the axis reads in round numbers.
func niceCeil(v int64) int64 {
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
	}
}

// fmtAge writes an age in seconds the way an operator reads it.
func fmtAge(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
