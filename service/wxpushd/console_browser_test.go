package wxpushd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// chromium returns the headless browser to drive; the test skips when
// there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it): skipping the console's browser test")
	return ""
}

// shotsDir is where the browser test writes its screenshots: $CONSOLE_SHOTS,
// or a folder in the system's temporary directory that outlives the test.
func shotsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CONSOLE_SHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "wxpush-console-shots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Logf("console screenshots in %s", dir)
	return dir
}

// browserLog collects the problems the page reports: console errors and
// warnings, uncaught exceptions, log warnings and errors (CSP violations,
// failed loads) and dialogs.
type browserLog struct {
	mu    sync.Mutex
	lines []string
}

func (b *browserLog) listen(ev any) {
	var line string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeWarning && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range e.Args {
			args = append(args, cmpOrStr(a.Description, string(a.Value)))
		}
		line = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + e.ExceptionDetails.Text
		if ex := e.ExceptionDetails.Exception; ex != nil {
			line += " " + ex.Description
		}
	case *log.EventEntryAdded:
		// Verbose and info entries are the browser's advice (autocomplete
		// hints); warnings and errors are problems, CSP violations among
		// them.
		if e.Entry.Level != log.EntryLevelWarning && e.Entry.Level != log.EntryLevelError {
			return
		}
		line = fmt.Sprintf("log %s/%s: %s", e.Entry.Source, e.Entry.Level, e.Entry.Text)
	case *page.EventJavascriptDialogOpening:
		line = fmt.Sprintf("dialog %s: %s", e.Type, e.Message)
	default:
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
}

func (b *browserLog) all() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.lines)
}

func cmpOrStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestConsoleInBrowser drives headless Chromium through the console of a
// real wxpushd: sign in, the overview, a search by user, a failed
// message's timeline, the dead letters and a redrive, checking the DOM,
// the message's state in the store, and that the browser reported no
// CSP violation, error or dialog. Each page's screenshot is kept.
func TestConsoleInBrowser(t *testing.T) {
	bin := chromium(t)
	dir := shotsDir(t)

	mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 15})
	in := startInstance(t, testConfig(mock, redistest.New(t)))
	a := api{t: t, base: in.URL(), key: testAPIKey}

	// Three messages that are sent, and one that fails: WeChat answers
	// -1 (with a hostile errmsg) to every one of its MaxAttempts attempts.
	failUser := openid(901)
	addRule(t, mock, `{"endpoint":"template_send","match":{"touser":"`+failUser+`"},"errcode":-1,"errmsg":"<script>alert('errmsg')</script>","times":4}`)
	var sent []string
	for i := range 3 {
		sent = append(sent, a.send(order(openid(i+1)), ""))
	}
	failed := a.send(order(failUser), "")
	for _, id := range sent {
		a.waitStatus(id, service.StatusSent, 10*time.Second)
	}
	m := a.waitStatus(failed, service.StatusFailed, 10*time.Second)
	require.Equal(t, service.ReasonAttemptsExhausted, m.Reason)

	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))...)
	defer cancelAlloc()
	var blog browserLog
	bctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithListener(blog.listen))
	defer cancelBrowser()
	// The first Run starts the browser: no deadline on it, or the
	// deadline would end the browser; every step after has one.
	require.NoError(t, chromedp.Do(bctx), "start chromium")

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(ctx, actions...), "step %q", name)
	}
	value := func(name string, js string, out any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		require.NoError(t, err, "%s: %s", name, js)
		switch p := out.(type) {
		case *string:
			*p = fmt.Sprint(v)
		case *int:
			f, ok := v.(float64)
			require.True(t, ok, "%s: %s = %v, not a number", name, js, v)
			*p = int(f)
		}
	}
	shot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err, "screenshot %s", name)
		path := filepath.Join(dir, name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot %s", path)
	}
	location := func() string {
		t.Helper()
		var loc string
		value("location", "document.location.pathname + document.location.search", &loc)
		return loc
	}
	count := func(sel string) int {
		t.Helper()
		var n int
		value("count "+sel, "document.querySelectorAll("+jsString(sel)+").length", &n)
		return n
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		value("text "+sel, "document.querySelector("+jsString(sel)+").textContent", &s)
		return s
	}

	// Signed out, the console sends the browser to the sign-in page.
	step("open the console", chromedp.Navigate(in.URL()+"/console"), chromedp.WaitVisible(chromedp.CSS("#api_key")))
	assert.Equal(t, "/console/login?next=%2Fconsole", location())
	shot("01-sign-in")
	step("sign in", chromedp.SendKeys(chromedp.CSS("#api_key"), testAPIKey), chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#chart-flow")))

	// The overview: both charts, the queue, the app.
	assert.Equal(t, "/console", location())
	assert.Equal(t, 2, count("figure.chart svg"))
	assert.Equal(t, 4, count("#chart-flow polyline"))
	assert.GreaterOrEqual(t, count("#chart-failed polyline"), 1, "attempts_exhausted is charted")
	var accepted string
	value("accepted in the legend", `[...document.querySelectorAll("#chart-flow .legend tbody tr")].find(r => r.textContent.includes("accepted")).lastElementChild.textContent`, &accepted)
	assert.Equal(t, "4", accepted, "four messages accepted in the last 24 hours")
	assert.Contains(t, text(`#apps tr[data-app="default"]`), "active")
	shot("02-overview")

	// Search by the failing user.
	step("search by user", chromedp.Navigate(in.URL()+"/console/messages"), chromedp.WaitVisible(chromedp.CSS("#f-touser")),
		chromedp.SendKeys(chromedp.CSS("#f-touser"), failUser), chromedp.Click(chromedp.CSS("#search-btn")),
		// The answer's form has the value in its HTML; the form typed into
		// has it only as a property.
		chromedp.WaitVisible(chromedp.CSS(`#f-touser[value="`+failUser+`"]`)), chromedp.WaitVisible(chromedp.CSS("#results")))
	assert.Contains(t, location(), "touser="+failUser)
	assert.Equal(t, 1, count("#results tbody tr[data-id]"), "one message of that user")
	assert.Equal(t, 1, count(`#results tr[data-id="`+failed+`"]`))
	shot("03-search")

	// Its detail page: fields and the timeline.
	step("open the message", chromedp.Click(chromedp.CSS(`#results tr[data-id="`+failed+`"] a.msg-link`)),
		chromedp.WaitVisible(chromedp.CSS("#history")))
	assert.Equal(t, "/console/messages/"+failed, location())
	assert.Equal(t, "failed", text("#m-status"))
	assert.Equal(t, m.RequestID, text("#m-request-id"))
	assert.Contains(t, text("#m-last-error"), "<script>alert('errmsg')</script>", "the hostile errmsg is shown as text")
	assert.Equal(t, 0, count("main script"), "and not run")
	assert.Equal(t, len(m.History), count("#history tbody tr[class^=ev-]"), "one row per history event")
	assert.Equal(t, 1, count("#history tr.ev-accepted"))
	assert.Equal(t, 4, count("#history tr.ev-attempt"), "four attempts")
	shot("04-message")

	// The dead letters, and a redrive.
	step("dead letters", chromedp.Navigate(in.URL()+"/console/deadletters"), chromedp.WaitVisible(chromedp.CSS("#deadletters")))
	assert.Equal(t, 1, count("#deadletters tbody tr[data-id]"))
	row := `#deadletters tr[data-id="` + failed + `"]`
	assert.Contains(t, text(row), service.ReasonAttemptsExhausted)
	assert.Equal(t, 0, count(row+` input[name="force"]`), "attempts_exhausted needs no force")
	shot("05-dead-letters")
	step("redrive", chromedp.Click(chromedp.CSS(row+" button.redrive-btn")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	assert.Equal(t, "/console/deadletters", location())
	assert.Contains(t, text("#flash"), "Message "+failed+" redriven")
	shot("06-redriven")

	// The store: the message is back in the queue and, the fault used
	// up, sent; its history has the redrive with this request's id.
	after := a.waitStatus(failed, service.StatusSent, 10*time.Second)
	assert.Equal(t, 1, after.Redrives)
	i := slices.IndexFunc(after.History, func(e service.HistoryEvent) bool { return e.Type == service.HistoryRedrive })
	require.GreaterOrEqual(t, i, 0, "a redrive event: %+v", after.History)
	assert.NotEmpty(t, after.History[i].RequestID)
	assert.Equal(t, service.ReasonAttemptsExhausted, after.History[i].Reason)

	step("the message after", chromedp.Navigate(in.URL()+"/console/messages/"+failed), chromedp.WaitVisible(chromedp.CSS("#history")))
	assert.Equal(t, "sent", text("#m-status"))
	assert.Equal(t, 1, count("#history tr.ev-redrive"))
	shot("07-message-after-redrive")

	// Nothing went wrong in the browser: no CSP violation, no error, no
	// dialog.
	assert.Empty(t, blog.all(), "the browser reported problems")

	// The control: the listener does see a CSP violation.
	step("violate the CSP", chromedp.Evaluate[chromedp.Void](`document.body.insertAdjacentHTML("beforeend", '<img src="http://example.invalid/x.png">')`))
	deadline := time.Now().Add(5 * time.Second)
	for len(blog.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Condition(t, func() bool {
		return slices.ContainsFunc(blog.all(), func(l string) bool { return strings.Contains(l, "Content Security Policy") })
	}, "a CSP violation is reported: %q", blog.all())
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
