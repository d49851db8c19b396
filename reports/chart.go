package reports

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// maxPoints is the most points a chart line keeps; longer series are
// downsampled with lttb. A chart is 960 units wide, so more would not show.
const maxPoints = 480

// line is one series of a chart.
type line struct {
	Name  string
	Color int // palette index: CSS class c0..c7
	Dash  int // dash pattern: CSS class d0..d3 (d0 solid)
	Pts   []point
}

// drawable reports whether the line has a point a chart can draw: a
// finite value, and a positive one on a log axis. A line that has none is
// neither drawn nor named in the legend.
func (l line) drawable(ylog bool) bool {
	for _, p := range l.Pts {
		if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) && (!ylog || p.Y > 0) {
			return true
		}
	}
	return false
}

// band is an interval of the x axis shaded behind the lines: a fault rule
// or a timeline action.
type band struct {
	Label string // short label drawn in the band (F1, F2, ...)
	Title string // the full name, shown as a tooltip
	Kind  string // rule or action: the band's colour
	Start float64
	End   float64
}

// tick is one labelled position on an axis.
type tick struct {
	V     float64
	Label string
}

// chart is an SVG line chart with axes, grid, legend and bands.
type chart struct {
	ID     string // element id, unique in the page
	Title  string
	Desc   string // what the chart shows, for screen readers
	XLabel string // with unit
	YLabel string // with unit
	XLog   bool
	YLog   bool
	// YInt makes a linear y axis count in whole numbers.
	YInt bool
	// XMin and XMax fix the x domain when XMax > XMin.
	XMin, XMax float64
	// XTicks replaces the computed x ticks when set.
	XTicks []tick
	Lines  []line
	Bands  []band
	Note   string // a short remark drawn at the top right
	W, H   int    // zero means 960 by 300
	// Narrow marks the variant drawn for a phone's screen (class
	// "chart narrow").
	Narrow bool
	// Mark, when positive, is drawn as a labelled vertical line (the end
	// of the load on time charts).
	Mark      float64
	MarkLabel string
}

// narrowW and narrowH are the size of a chart's variant for phones: half
// the width, so that its text stays readable on a small screen.
const narrowW, narrowH = 480, 320

// render draws the chart and, for a full-width one, its narrow variant
// for phones (the page shows one or the other by the screen's width).
func (c *chart) render() (wide, narrow template.HTML) {
	wide = c.svg()
	if c.W != 0 && c.W <= narrowW {
		return wide, ""
	}
	n := *c
	n.ID, n.W, n.H, n.Narrow = c.ID+"-n", narrowW, narrowH, true
	return wide, n.svg()
}

// Layout of the plot area inside the SVG.
const (
	padLeft   = 62
	padRight  = 14
	padBottom = 42
	legendRow = 18
)

// svg renders the chart. Text is escaped here: the result is trusted HTML.
func (c *chart) svg() template.HTML {
	w, h := c.W, c.H
	if w == 0 {
		w, h = 960, 300
	}
	var b strings.Builder
	titleID, descID := c.ID+"-t", c.ID+"-d"
	class := "chart"
	if c.Narrow {
		class = "chart narrow"
	}
	fmt.Fprintf(&b, `<svg class="%s" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s %s">`,
		class, esc(c.ID), w, h, w, h, titleID, descID)
	fmt.Fprintf(&b, `<title id="%s">%s</title><desc id="%s">%s</desc>`, titleID, esc(c.Title), descID, esc(c.Desc))

	// Only the lines with something to draw are drawn and named.
	var lines []line
	for _, l := range c.Lines {
		if l.drawable(c.YLog) {
			lines = append(lines, l)
		}
	}
	// Legend rows first: they set the top of the plot area.
	type item struct {
		x, row int
		l      line
	}
	var items []item
	x, row := padLeft, 0
	for _, l := range lines {
		width := 28 + textWidth(l.Name) + 18
		if x+width > w-padRight && x > padLeft {
			x, row = padLeft, row+1
		}
		items = append(items, item{x, row, l})
		x += width
	}
	top := 14 + (row+1)*legendRow
	if c.Note != "" && row == 0 && x+textWidth(c.Note) > w-padRight-8 {
		top += legendRow
	}
	left, right, bottom := padLeft, w-padRight, h-padBottom
	pw, ph := float64(right-left), float64(bottom-top)

	// Domains.
	xlo, xhi, ylo, yhi, has := c.domain()
	if c.XMax > c.XMin {
		xlo, xhi = c.XMin, c.XMax
	}
	var xticks, yticks []tick
	if c.XLog {
		xlo, xhi = logDomain(xlo, xhi)
		xticks = logTicks(xlo, xhi)
	} else {
		if xhi <= xlo {
			xhi = xlo + 1
		}
		xticks = linTicks(xlo, xhi, 8)
	}
	if c.XTicks != nil {
		xticks = c.XTicks
	}
	if c.YLog {
		ylo, yhi = logDomain(ylo, yhi)
		yticks = logTicks(ylo, yhi)
	} else {
		ylo = 0
		yhi *= 1.06 // headroom: a line along the top would hide in the frame
		if c.YInt {
			yhi = math.Max(yhi, 4)
		}
		if yhi <= 0 {
			yhi = 1
		}
		yticks = linTicks(0, yhi, 5)
		yhi = math.Max(yhi, yticks[len(yticks)-1].V)
	}
	sx := scale(xlo, xhi, float64(left), pw, c.XLog)
	sy := scale(ylo, yhi, float64(bottom), -ph, c.YLog)

	clip := c.ID + "-clip"
	fmt.Fprintf(&b, `<defs><clipPath id="%s"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath></defs>`, clip, left, top, right-left, bottom-top)
	fmt.Fprintf(&b, `<rect class="plot" x="%d" y="%d" width="%d" height="%d"/>`, left, top, right-left, bottom-top)

	// Grid lines, then bands over them, then the lines.
	b.WriteString(`<g class="grid">`)
	for _, t := range yticks {
		y := sy(t.V)
		if y < float64(top)-0.5 || y > float64(bottom)+0.5 {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%s" y2="%s"/>`, left, right, f1(y), f1(y))
	}
	for _, t := range xticks {
		x := sx(t.V)
		if x < float64(left)-0.5 || x > float64(right)+0.5 {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%d" y2="%d"/>`, f1(x), f1(x), top, bottom)
	}
	b.WriteString(`</g>`)

	// Bands behind the lines.
	if len(c.Bands) > 0 {
		fmt.Fprintf(&b, `<g class="bands" clip-path="url(#%s)">`, clip)
		for _, bd := range c.Bands {
			x0, x1 := sx(math.Max(bd.Start, xlo)), sx(math.Min(bd.End, xhi))
			if x1 < x0 || bd.Start > xhi || bd.End < xlo {
				continue
			}
			x1 = math.Max(x1, x0+2) // an instant still shows
			fmt.Fprintf(&b, `<rect class="band %s" x="%s" y="%d" width="%s" height="%d"><title>%s</title></rect>`,
				bandClass(bd.Kind), f1(x0), top, f1(x1-x0), bottom-top, esc(bd.Title))
			fmt.Fprintf(&b, `<text class="bandlabel" x="%s" y="%d">%s</text>`, f1(x0+3), top+12, esc(bd.Label))
		}
		b.WriteString(`</g>`)
	}

	if c.Mark > 0 && c.Mark >= xlo && c.Mark <= xhi {
		x := sx(c.Mark)
		fmt.Fprintf(&b, `<line class="mark" x1="%s" x2="%s" y1="%d" y2="%d"/>`, f1(x), f1(x), top, bottom)
		fmt.Fprintf(&b, `<text class="marklabel" x="%s" y="%d" text-anchor="end">%s</text>`, f1(x-3), bottom-6, esc(c.MarkLabel))
	}

	b.WriteString(`<g class="ticks">`)
	for _, t := range yticks {
		y := sy(t.V)
		if y < float64(top)-0.5 || y > float64(bottom)+0.5 {
			continue
		}
		fmt.Fprintf(&b, `<text x="%d" y="%s" text-anchor="end">%s</text>`, left-6, f1(y+4), esc(t.Label))
	}
	for _, t := range xticks {
		x := sx(t.V)
		if x < float64(left)-0.5 || x > float64(right)+0.5 {
			continue
		}
		label := t.Label
		if label == "" {
			label = fmtNum(t.V)
		}
		anchor := "middle"
		if x > float64(right)-3*float64(len(label)) {
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="%s">%s</text>`, f1(x), bottom+16, anchor, esc(label))
	}
	b.WriteString(`</g>`)
	fmt.Fprintf(&b, `<text class="axis" x="%s" y="%d" text-anchor="middle">%s</text>`, f1(float64(left)+pw/2), h-6, esc(c.XLabel))
	fmt.Fprintf(&b, `<text class="axis" transform="translate(14 %s) rotate(-90)" text-anchor="middle">%s</text>`, f1(float64(top)+ph/2), esc(c.YLabel))

	// Lines, clipped to the plot area.
	fmt.Fprintf(&b, `<g class="lines" clip-path="url(#%s)">`, clip)
	for _, l := range lines {
		d := path(downsample(l.Pts, maxPoints), sx, sy, ylo, c.YLog)
		if d == "" {
			continue
		}
		fmt.Fprintf(&b, `<path class="c%d d%d" d="%s"><title>%s</title></path>`, l.Color%8, l.Dash%4, d, esc(l.Name))
	}
	b.WriteString(`</g>`)
	if !has {
		fmt.Fprintf(&b, `<text class="nodata" x="%s" y="%s" text-anchor="middle">no data</text>`, f1(float64(left)+pw/2), f1(float64(top)+ph/2))
	}
	// The frame goes last so lines never hide it.
	fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%d" width="%d" height="%d"/>`, left, top, right-left, bottom-top)

	// Legend.
	b.WriteString(`<g class="legend">`)
	for _, it := range items {
		y := 14 + it.row*legendRow
		fmt.Fprintf(&b, `<line class="c%d d%d" x1="%d" x2="%d" y1="%d" y2="%d"/>`, it.l.Color%8, it.l.Dash%4, it.x, it.x+22, y-4, y-4)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`, it.x+28, y, esc(it.l.Name))
	}
	note := c.Note
	if below := c.below(ylo); c.YLog && below > 0 {
		// A log axis spans at most six decades: say what it leaves out
		// rather than pin it to the floor.
		note = fmt.Sprintf("%d point%s below %s not drawn", below, plural(below), fmtNum(ylo))
	}
	if note != "" {
		fmt.Fprintf(&b, `<text class="note" x="%d" y="%d" text-anchor="end">%s</text>`, right, top-6, esc(note))
	}
	b.WriteString(`</g></svg>`)
	return template.HTML(b.String())
}

// below counts the positive values under the y axis' floor.
func (c *chart) below(ylo float64) int {
	n := 0
	for _, l := range c.Lines {
		for _, p := range l.Pts {
			if p.Y > 0 && p.Y < ylo {
				n++
			}
		}
	}
	return n
}

// domain is the extent of the data; has is false when no line has a
// usable point. Log axes ignore values <= 0.
func (c *chart) domain() (xlo, xhi, ylo, yhi float64, has bool) {
	xlo, ylo = math.Inf(1), math.Inf(1)
	xhi, yhi = math.Inf(-1), math.Inf(-1)
	for _, l := range c.Lines {
		for _, p := range l.Pts {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) || (c.YLog && p.Y <= 0) || (c.XLog && p.X <= 0) {
				continue
			}
			has = true
			xlo, xhi = math.Min(xlo, p.X), math.Max(xhi, p.X)
			ylo, yhi = math.Min(ylo, p.Y), math.Max(yhi, p.Y)
		}
	}
	if !has {
		return 0, 1, 1, 10, false
	}
	return xlo, xhi, ylo, yhi, true
}

// scale maps data values to SVG coordinates: origin + span*fraction.
func scale(lo, hi, origin, span float64, log bool) func(float64) float64 {
	if log {
		llo, lhi := math.Log10(lo), math.Log10(hi)
		return func(v float64) float64 {
			if v <= 0 {
				v = lo
			}
			return origin + span*(math.Log10(v)-llo)/(lhi-llo)
		}
	}
	return func(v float64) float64 { return origin + span*(v-lo)/(hi-lo) }
}

// logDomain widens [lo, hi] to whole decades, at most six of them below hi.
func logDomain(lo, hi float64) (float64, float64) {
	if hi <= 0 || math.IsInf(hi, 0) {
		return 1, 10
	}
	if lo <= 0 || math.IsInf(lo, 0) {
		lo = hi / 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	dlo = math.Max(dlo, dhi-6)
	return math.Pow(10, dlo), math.Pow(10, dhi)
}

// logTicks are the decades of [lo, hi], with 2 and 5 between them when
// the axis spans two decades or fewer.
func logTicks(lo, hi float64) []tick {
	var ts []tick
	dlo, dhi := int(math.Round(math.Log10(lo))), int(math.Round(math.Log10(hi)))
	for d := dlo; d <= dhi; d++ {
		v := math.Pow(10, float64(d))
		ts = append(ts, tick{V: v, Label: fmtNum(v)})
		if dhi-dlo <= 2 && d < dhi {
			ts = append(ts, tick{V: 2 * v, Label: fmtNum(2 * v)}, tick{V: 5 * v, Label: fmtNum(5 * v)})
		}
	}
	return ts
}

// linTicks are about n evenly spaced round values covering [lo, hi].
func linTicks(lo, hi float64, n int) []tick {
	step := niceStep((hi - lo) / float64(n))
	var ts []tick
	for v := math.Floor(lo/step) * step; v < hi+step*0.999; v += step {
		r := math.Round(v/step) * step
		ts = append(ts, tick{V: r, Label: fmtNum(r)})
	}
	return ts
}

// niceStep rounds a raw step up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// downsample keeps at most n points of a line, splitting it at gaps (NaN)
// and giving each piece its share.
func downsample(pts []point, n int) []point {
	if len(pts) <= n {
		return pts
	}
	var out []point
	start := 0
	for i := 0; i <= len(pts); i++ {
		if i < len(pts) && !math.IsNaN(pts[i].Y) {
			continue
		}
		if seg := pts[start:i]; len(seg) > 0 {
			share := max(3, len(seg)*n/len(pts))
			out = append(out, lttb(seg, share)...)
		}
		if i < len(pts) && (len(out) == 0 || !math.IsNaN(out[len(out)-1].Y)) {
			out = append(out, pts[i]) // one NaN per gap is enough
		}
		start = i + 1
	}
	return out
}

// path is an SVG path through the points; NaN values break the line, and
// so do values under a log axis' floor (never pinned to it).
func path(pts []point, sx, sy func(float64) float64, ylo float64, ylog bool) string {
	var b []byte
	pen := false
	for _, p := range pts {
		if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) || ylog && p.Y < ylo {
			pen = false
			continue
		}
		y := p.Y
		if pen {
			b = append(b, 'L')
		} else {
			b = append(b, 'M')
		}
		b = strconv.AppendFloat(b, round1(sx(p.X)), 'f', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, round1(sy(y)), 'f', -1, 64)
		pen = true
	}
	return string(b)
}

func bandClass(kind string) string {
	if kind == "rule" {
		return "rule"
	}
	return "action"
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func f1(v float64) string { return strconv.FormatFloat(round1(v), 'f', -1, 64) }

// textWidth estimates the width of a 12 px label.
func textWidth(s string) int { return 7 * len([]rune(s)) }

func esc(s string) string { return html.EscapeString(s) }

// fmtNum formats a value compactly: 0.25, 3, 1200, 25k, 1.5M.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return trim(v/1e6, 1) + "M"
	case a >= 1e5:
		return trim(v/1e3, 0) + "k"
	case a >= 100:
		return trim(v, 0)
	case a >= 10:
		return trim(v, 1)
	case a >= 1:
		return trim(v, 2)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

func trim(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
