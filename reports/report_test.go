package reports

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxpush/wxpush/loadtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// fixtures are the fixed run directories under testdata/runs.
var fixtures = []string{"smoke", "quota-45009", "smoke-regressed"}

// copyRun copies a fixture's summary.json and series.json to a new
// directory, so that Render writes outside testdata.
func copyRun(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{loadtest.SummaryFile, loadtest.SeriesFile} {
		b, err := os.ReadFile(filepath.Join("testdata", "runs", name, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// golden compares got with testdata/golden/name, or rewrites it with
// -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		line := 1 + bytes.Count(got[:commonPrefix(got, want)], []byte("\n"))
		t.Errorf("%s differs from the golden file from line %d (go test ./reports -update rewrites it after a deliberate change)", path, line)
	}
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func TestRenderGolden(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			dir := copyRun(t, name)
			if err := Render(dir); err != nil {
				t.Fatalf("Render(%s): %v", name, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, loadtest.ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".html", got)
		})
	}
}

func TestRenderShowsTheRun(t *testing.T) {
	dir := copyRun(t, "quota-45009")
	if err := Render(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, loadtest.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		"<h1>quota-45009 <span class=\"verdict pass\">✓ PASSED</span></h1>",
		"The app&#39;s daily quota runs out",                          // description
		"<code>(mock.by_errcode[&#34;45009&#34;] ?? 0) &gt; 0</code>", // an expectation's expression
		"<td class=\"num\">1757</td>",                                 // its measured value
		"seed 1", "go1.26.8", "2 cores", "1 wxpushd instance",         // metadata
		"F1 quota-exhausted: template_send errcode 45009", // the fault band
		`class="band rule"`,
		"daily quota of this API is used up", // errcode meaning
		"Generator self-check", "Accounting (every accepted message)", "Latency percentiles",
		"mock errcode 45009",                                                     // a line of the outcomes chart
		"latency (ms, log scale)", timeAxis, "percentile (log scale of 1/(1−p))", // axis labels with units
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// Every chart has a title and a description for screen readers.
	charts := regexp.MustCompile(`<svg class="chart" id="([^"]+)"[^>]*role="img" aria-labelledby="([^"]+)"><title id="[^"]+">[^<]+</title><desc id="[^"]+">[^<]+</desc>`).FindAllStringSubmatch(page, -1)
	if len(charts) != 7 {
		t.Errorf("found %d charts with title and description, want 7", len(charts))
	}
	// The full-width ones have a narrow twin for phones.
	narrow := regexp.MustCompile(`<svg class="chart narrow" id="([^"]+)-n"[^>]*role="img" aria-labelledby="([^"]+)"><title id="[^"]+">[^<]+</title><desc id="[^"]+">[^<]+</desc>`).FindAllStringSubmatch(page, -1)
	if len(narrow) != 5 {
		t.Errorf("found %d narrow charts, want 5 (every full-width chart)", len(narrow))
	}
	if n := strings.Count(page, "<svg"); n != len(charts)+len(narrow) {
		t.Errorf("%d svg elements, %d of them well-formed charts", n, len(charts)+len(narrow))
	}
}

func TestRenderWithoutSeries(t *testing.T) {
	dir := copyRun(t, "smoke")
	if err := os.Remove(filepath.Join(dir, loadtest.SeriesFile)); err != nil {
		t.Fatal(err)
	}
	if err := Render(dir); err != nil {
		t.Fatalf("Render without series.json: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, loadtest.ReportFile))
	if !strings.Contains(string(b), "no series.json") {
		t.Error("the report does not say that the run has no series")
	}
}

func TestRenderMissingSummary(t *testing.T) {
	if err := Render(t.TempDir()); err == nil {
		t.Error("Render of a directory without summary.json succeeded")
	}
}

// externalRef finds references that would make a browser load something
// from elsewhere: src, href, xlink:href, srcset, action and CSS url() or
// @import with an http:, https: or protocol-relative (//) target.
var externalRef = regexp.MustCompile(`(?i)((src|href|srcset|action|poster|data)\s*=\s*["']?\s*(https?:|//))|(url\(\s*["']?\s*(https?:|//))|(@import)`)

func TestExternalRefDetector(t *testing.T) {
	for _, bad := range []string{
		`<img src="http://x/y.png">`, `<a href='https://x'>`, `<script src=//cdn/x.js>`,
		`<link rel=stylesheet href = "//x/y.css">`, `style="background:url(https://x/y.png)"`,
		`fill="url( '//x#a')"`, `@import "x.css";`, `<use xlink:href="http://x/s.svg#a"/>`,
	} {
		if !externalRef.MatchString(bad) {
			t.Errorf("the detector misses %s", bad)
		}
	}
	for _, ok := range []string{`clip-path="url(#rate-clip)"`, `<a href="../runs/x/index.html">`, `text about https://x`} {
		if externalRef.MatchString(ok) {
			t.Errorf("the detector flags %s", ok)
		}
	}
}

// TestNoExternalReferences checks every kind of page, including one whose
// scenario text tries to inject references.
func TestNoExternalReferences(t *testing.T) {
	pages := map[string][]byte{}
	for _, name := range fixtures {
		dir := copyRun(t, name)
		if err := Render(dir); err != nil {
			t.Fatal(err)
		}
		pages[name], _ = os.ReadFile(filepath.Join(dir, loadtest.ReportFile))
	}
	// Hostile text in the summary stays text.
	dir := copyRun(t, "smoke")
	s, err := loadtest.ReadSummary(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Description = `see https://example.com/x <img src="https://example.com/x.png"> <style>@import url(//x/y.css)</style>`
	s.Expectations[0].Name = `<a href="//evil">x</a>`
	s.Run.Warnings = []string{`<script src="http://x/y.js"></script>`}
	var buf bytes.Buffer
	if _, err := (&Report{Summary: s, Series: &loadtest.Series{}}).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	hostile := buf.Bytes()
	for _, raw := range []string{`<img src="https://example.com/x.png">`, `<style>@import`, `<a href="//evil">`, `<script src="http://x/y.js">`} {
		if bytes.Contains(hostile, []byte(raw)) {
			t.Errorf("hostile summary text reached the page as markup: %s", raw)
		}
	}
	for _, escaped := range []string{`&lt;img src=&#34;https://example.com/x.png&#34;&gt;`, `&lt;a href=&#34;//evil&#34;&gt;`, `&lt;script src=&#34;http://x/y.js&#34;&gt;`} {
		if !bytes.Contains(hostile, []byte(escaped)) {
			t.Errorf("hostile summary text not shown escaped: want %s", escaped)
		}
	}

	out := filepath.Join(t.TempDir(), "cmp.html")
	if _, err := Compare(filepath.Join("testdata", "runs", "smoke"), filepath.Join("testdata", "runs", "smoke-regressed"), out, DefaultTolerances()); err != nil {
		t.Fatal(err)
	}
	pages["compare"], _ = os.ReadFile(out)
	idx := filepath.Join(t.TempDir(), "index.html")
	if err := Index(filepath.Join("testdata", "runs"), idx); err != nil {
		t.Fatal(err)
	}
	pages["index"], _ = os.ReadFile(idx)

	for name, p := range pages {
		if len(p) == 0 {
			t.Errorf("%s: empty page", name)
			continue
		}
		if m := externalRef.Find(p); m != nil {
			t.Errorf("%s: external reference %q", name, m)
		}
		if bytes.Contains(bytes.ToLower(p), []byte("<script")) {
			t.Errorf("%s: the page has a script element", name)
		}
		if !bytes.Contains(p, []byte(`<meta http-equiv="Content-Security-Policy" content="`+CSP+`">`)) {
			t.Errorf("%s: no Content-Security-Policy meta tag with %q", name, CSP)
		}
		if bytes.Contains(p, []byte("http:")) || bytes.Contains(p, []byte("https:")) {
			t.Errorf("%s: the page mentions an http: or https: URL at all", name)
		}
	}
}

// largeSeries is a synthetic run of seconds seconds at rate requests per
// second, with faults.
func largeSeries(seconds, rate int) *loadtest.Series {
	ser := &loadtest.Series{Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i := 0; i < seconds; i++ {
		w := 1 + 0.5*math.Sin(float64(i)/300)
		spike := 1.0
		if i%997 == 0 {
			spike = 40
		}
		p := loadtest.Percentiles{P50: 2 * w, P90: 8 * w, P99: 30 * w * spike, Max: 60 * w * spike, Mean: 3 * w}
		ser.Seconds = append(ser.Seconds, loadtest.Second{
			T: i, TargetRate: float64(rate), Sent: rate, OK: rate - i%3, Errors: i % 3, Accepted: rate - i%3,
			LatencyMS: p, Delivered: rate - i%3, E2EMS: p, QueueDepth: float64(i % 50), TokenRefreshes: float64(i / 7200),
			Retries: float64(i / 10), InstancesUp: 2, MockErrcodes: map[string]int{"0": rate, "-1": i % 5},
		})
	}
	for s := 100; s < seconds; s += 2000 {
		ser.Bands = append(ser.Bands, loadtest.Band{Name: "system busy", Kind: "rule", Start: float64(s), End: float64(s + 300)})
	}
	for _, p := range []float64{0, 50, 90, 99, 99.9, 99.99, 99.999, 100} {
		ser.Spectrum = append(ser.Spectrum, loadtest.SpectrumPoint{Percentile: p, MS: 1 + p})
		ser.E2ESpectrum = append(ser.E2ESpectrum, loadtest.SpectrumPoint{Percentile: p, MS: 2 + p})
	}
	return ser
}

// TestRenderLargeRun renders a synthetic run of a million requests (50/s
// for 20 000 s). It asserts the size of the page, which downsampling
// bounds, and only prints the time it took.
func TestRenderLargeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a million-request series: skipped in -short")
	}
	dir := copyRun(t, "smoke")
	ser := largeSeries(20000, 50)
	b, err := json.Marshal(ser)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, loadtest.SeriesFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := Render(dir); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	st, err := os.Stat(filepath.Join(dir, loadtest.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1M requests over %d s: series.json %d KB, report %d KB, rendered in %v", len(ser.Seconds), len(b)>>10, st.Size()>>10, took)
	if st.Size() > 2<<20 {
		t.Errorf("report of a 1M-request run is %d bytes, want under 2 MB", st.Size())
	}
	page, _ := os.ReadFile(filepath.Join(dir, loadtest.ReportFile))
	if !bytes.Contains(page, []byte(fmt.Sprintf("each chart line is downsampled to at most %d points", maxPoints))) {
		t.Error("the report does not say it downsampled")
	}
}
