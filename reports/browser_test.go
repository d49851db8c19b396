package reports

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/loadtest"
)

var pngDir = flag.String("png", "", "keep the browser test's screenshots in this directory")

// browser is the headless Chromium to render with; the test skips when
// there is none.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it): skipping the browser test")
	return ""
}

// shot is what the browser made of a page.
type shot struct {
	img     image.Image
	console []string // console messages: errors, CSP violations, warnings
}

// screenshot renders page in headless Chromium at 1280 pixels wide.
func screenshot(t *testing.T, bin, page string, height int, dark bool, keep string) shot {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "shot.png")
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
		"--user-data-dir=" + filepath.Join(dir, "profile"), fmt.Sprintf("--window-size=1280,%d", height), "--screenshot=" + out}
	if dark {
		args = append(args, "--force-dark-mode")
	}
	args = append(args, (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = append(os.Environ(), "HOME="+dir)
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, log.String())
	}
	t.Logf("chromium took %v", time.Since(began).Round(time.Millisecond))
	var s shot
	sc := bufio.NewScanner(&log)
	for sc.Scan() {
		if strings.Contains(sc.Text(), ":CONSOLE") {
			s.console = append(s.console, sc.Text())
		}
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, log.String())
	}
	defer f.Close()
	if s.img, err = png.Decode(f); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if *pngDir != "" && keep != "" {
		b, _ := os.ReadFile(out)
		if err := os.WriteFile(filepath.Join(*pngDir, keep), b, 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("screenshot kept in %s", filepath.Join(*pngDir, keep))
	}
	return s
}

// The chart frame colours of style.css (--frame), light and dark.
var (
	frameLight = color.RGBA{0x6b, 0x6b, 0x70, 0xff}
	frameDark  = color.RGBA{0x8d, 0x90, 0x97, 0xff}
)

// ink are the palette's line colours, light and dark.
var ink = []color.RGBA{
	{0x00, 0x72, 0xb2, 0xff}, {0xe6, 0x9f, 0x00, 0xff}, {0x00, 0x9e, 0x73, 0xff}, {0xcc, 0x79, 0xa7, 0xff}, {0xd5, 0x5e, 0x00, 0xff}, {0x56, 0xb4, 0xe9, 0xff},
	{0x4a, 0xa8, 0xe8, 0xff}, {0xf0, 0xb4, 0x29, 0xff}, {0x2f, 0xc4, 0x97, 0xff}, {0xe0, 0x8f, 0xc0, 0xff}, {0xff, 0x7a, 0x33, 0xff}, {0x8f, 0xd0, 0xf5, 0xff},
}

// pixels is a screenshot as 8-bit RGB(A) bytes, read without the cost of
// image.Image's interface per pixel.
type pixels struct {
	pix    []uint8
	stride int
	bounds image.Rectangle
}

func newPixels(img image.Image) pixels {
	switch m := img.(type) {
	case *image.RGBA:
		return pixels{m.Pix, m.Stride, m.Bounds()}
	case *image.NRGBA: // an opaque screenshot: the same bytes
		return pixels{m.Pix, m.Stride, m.Bounds()}
	}
	m := image.NewRGBA(img.Bounds())
	draw.Draw(m, m.Bounds(), img, img.Bounds().Min, draw.Src)
	return pixels{m.Pix, m.Stride, m.Bounds()}
}

// near reports whether the pixel at x, y is within tol of want in each
// channel; outside the image it is false.
func (p pixels) near(x, y int, want color.RGBA, tol int) bool {
	if !image.Pt(x, y).In(p.bounds) {
		return false
	}
	i := (y-p.bounds.Min.Y)*p.stride + (x-p.bounds.Min.X)*4
	d := func(a, b uint8) bool { v := int(a) - int(b); return v <= tol && v >= -tol }
	return d(p.pix[i], want.R) && d(p.pix[i+1], want.G) && d(p.pix[i+2], want.B)
}

// frames finds the charts in a screenshot: the rectangles drawn in the
// frame colour (a horizontal edge at least 200 pixels long, the left edge
// down to a matching bottom edge).
func frames(img image.Image, frame color.RGBA) []image.Rectangle {
	px := newPixels(img)
	bd := px.bounds
	is := func(x, y int) bool { return px.near(x, y, frame, 3) }
	var found []image.Rectangle
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			if !is(x, y) || is(x-1, y) {
				continue
			}
			x1 := x
			for is(x1+1, y) {
				x1++
			}
			if x1-x < 200 {
				x = x1
				continue
			}
			// Walk down the left edge to the bottom edge.
			y1 := y
			for is(x, y1+1) {
				y1++
			}
			r := image.Rect(x, y, x1+1, y1+1)
			bottom := 0
			for bx := x; bx <= x1; bx++ {
				if is(bx, y1) {
					bottom++
				}
			}
			if y1-y >= 60 && bottom > (x1-x)*9/10 && !overlaps(found, r) {
				found = append(found, r)
			}
			x = x1
		}
	}
	return found
}

func overlaps(rs []image.Rectangle, r image.Rectangle) bool {
	for _, o := range rs {
		if o.Overlaps(r) {
			return true
		}
	}
	return false
}

// inked counts the pixels in r drawn in a palette colour.
func inked(img image.Image, r image.Rectangle) int {
	px := newPixels(img)
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			for _, c := range ink {
				if px.near(x, y, c, 24) {
					n++
					break
				}
			}
		}
	}
	return n
}

// renderPages renders the quota-45009 fixture's report and a comparison
// of two smoke runs, and returns their paths.
func renderPages(t *testing.T) (report, compare string) {
	t.Helper()
	dir := copyRun(t, "quota-45009")
	if err := Render(dir); err != nil {
		t.Fatal(err)
	}
	compare = filepath.Join(t.TempDir(), "compare.html")
	if _, err := Compare(filepath.Join("testdata", "runs", "smoke"), filepath.Join("testdata", "runs", "smoke-regressed"), compare, DefaultTolerances()); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, loadtest.ReportFile), compare
}

// TestBrowser renders reports in headless Chromium, light and dark: the
// page loads without a console message (a CSP violation would be one),
// and every chart shows as a frame of real size with lines in it.
func TestBrowser(t *testing.T) {
	bin := browser(t)
	report, cmp := renderPages(t)
	pages := []struct {
		name, path string
		height     int
	}{
		{"report", report, 7000},
		{"compare", cmp, 4500},
	}
	for _, p := range pages {
		html, err := os.ReadFile(p.path)
		if err != nil {
			t.Fatal(err)
		}
		charts := bytes.Count(html, []byte(`<svg class="chart"`))
		for _, dark := range []bool{false, true} {
			mode, frame := "light", frameLight
			if dark {
				mode, frame = "dark", frameDark
			}
			t.Run(p.name+"/"+mode, func(t *testing.T) {
				s := screenshot(t, bin, p.path, p.height, dark, p.name+"-"+mode+".png")
				if len(s.console) > 0 {
					t.Errorf("the browser console reported:\n%s", strings.Join(s.console, "\n"))
				}
				bg := s.img.At(2, 2)
				if r, _, _, _ := bg.RGBA(); dark != (r>>8 < 128) {
					t.Errorf("background %v in %s mode", bg, mode)
				}
				fs := frames(s.img, frame)
				t.Logf("%d charts in the HTML, %d frames on screen: %v", charts, len(fs), fs)
				if len(fs) != charts {
					t.Errorf("found %d chart frames on screen, want %d (the charts in the HTML): %v", len(fs), charts, fs)
				}
				for _, r := range fs {
					if r.Dx() < 300 || r.Dy() < 100 {
						t.Errorf("chart at %v is %dx%d pixels, want at least 300x100", r.Min, r.Dx(), r.Dy())
					}
					if n := inked(s.img, r); n < 100 {
						t.Errorf("chart at %v has %d pixels of line colour: no lines drawn", r.Min, n)
					}
				}
			})
		}
	}
}

// TestBrowserCatchesBrokenPage is the control: a page that loads from
// elsewhere and hides its charts must fail both checks of TestBrowser.
func TestBrowserCatchesBrokenPage(t *testing.T) {
	bin := browser(t)
	dir := copyRun(t, "smoke")
	if err := Render(dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, loadtest.ReportFile)
	html, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(html), "svg.chart{display:block;", "svg.chart{display:none;", 1)
	broken = strings.Replace(broken, "<main>", `<main><img alt="" src="http://127.0.0.1:9/x.png">`, 1)
	if broken == string(html) {
		t.Fatal("could not break the page")
	}
	if err := os.WriteFile(p, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	s := screenshot(t, bin, p, 2000, false, "")
	if len(s.console) == 0 {
		t.Error("a blocked remote image left no console message")
	}
	if fs := frames(s.img, frameLight); len(fs) != 0 {
		t.Errorf("found %d chart frames on a page whose charts are hidden", len(fs))
	}
}

// phoneWidth is the CSS width of a phone's screen.
const phoneWidth = 390

// phoneView is what a page looks like in a frame phoneWidth pixels wide.
type phoneView struct {
	scrollW, clientW int    // the page's scroll and client widths
	culprits         string // elements that stick out to the right (tag.class)
	narrow, wide     int    // narrow charts shown, full-width charts shown
}

// overflow loads page in a frame phoneWidth pixels wide in headless
// Chromium and measures it, from the DOM, by a wrapper page (the report
// itself runs no script).
func overflow(t *testing.T, bin, page string) phoneView {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	src := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	wrapper := filepath.Join(dir, "phone.html")
	html := fmt.Sprintf(`<!doctype html><html><body style="margin:0">
<iframe id="f" src=%q style="width:%dpx;height:800px;border:0"></iframe>
<pre id="out">pending</pre>
<script>
document.getElementById("f").addEventListener("load", function () {
  var d = this.contentDocument, e = d.documentElement, out = [];
  d.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.right > e.clientWidth + 1 && out.length < 8) out.push(el.tagName.toLowerCase() + "." + (el.getAttribute("class") || ""));
  });
  var shown = function (sel) { var n = 0; d.querySelectorAll(sel).forEach(function (el) { if (el.getBoundingClientRect().width > 0) n++; }); return n; };
  document.getElementById("out").textContent = "charts " + shown("svg.chart.narrow") + " " + shown(".wide-only svg") +
    " overflow " + e.scrollWidth + " " + e.clientWidth + " " + out.join(",");
});
</script></body></html>`, src, phoneWidth)
	if err := os.WriteFile(wrapper, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--allow-file-access-from-files", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", (&url.URL{Scheme: "file", Path: filepath.ToSlash(wrapper)}).String())
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	m := regexp.MustCompile(`charts (\d+) (\d+) overflow (\d+) (\d+) ?([^<]*)`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("the wrapper page did not measure the report:\n%s", dom)
	}
	var v phoneView
	v.narrow, _ = strconv.Atoi(string(m[1]))
	v.wide, _ = strconv.Atoi(string(m[2]))
	v.scrollW, _ = strconv.Atoi(string(m[3]))
	v.clientW, _ = strconv.Atoi(string(m[4]))
	v.culprits = string(m[5])
	return v
}

// TestBrowserPhoneWidth: at a phone's width the pages do not overflow
// sideways (wide tables scroll within themselves, charts shrink to fit),
// and the check catches a page that does.
func TestBrowserPhoneWidth(t *testing.T) {
	bin := browser(t)
	report, cmp := renderPages(t)
	idx := filepath.Join(t.TempDir(), "index.html")
	if err := Index(filepath.Join("testdata", "runs"), idx); err != nil {
		t.Fatal(err)
	}
	for name, page := range map[string]string{"report": report, "compare": cmp, "index": idx} {
		t.Run(name, func(t *testing.T) {
			v := overflow(t, bin, page)
			t.Logf("%s at %d px: %+v", name, phoneWidth, v)
			if v.clientW > phoneWidth || v.clientW < phoneWidth-20 {
				t.Errorf("client width %d: the frame is not %d px wide", v.clientW, phoneWidth)
			}
			if v.scrollW > v.clientW {
				t.Errorf("the page is %d px wide at a %d px screen: it overflows sideways (%s)", v.scrollW, v.clientW, v.culprits)
			}
			html, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.Count(html, []byte(`<svg class="chart narrow"`)); v.narrow != want || v.wide != 0 {
				t.Errorf("%d narrow and %d full-width charts shown, want the %d narrow ones only", v.narrow, v.wide, want)
			}
		})
	}
	t.Run("control", func(t *testing.T) {
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		wide := filepath.Join(t.TempDir(), "wide.html")
		if err := os.WriteFile(wide, bytes.Replace(b, []byte("<main>"), []byte(`<main><div style="width:900px">wide</div>`), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if v := overflow(t, bin, wide); v.scrollW <= v.clientW {
			t.Errorf("a page with a 900 px element measured %d px in a %d px frame: the check cannot fail", v.scrollW, v.clientW)
		}
	})
}
