package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/envscan"
	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// runningMock is mockwx's run serving on a loopback port in this process.
type runningMock struct {
	addr           string
	stdout, stderr *syncbuf.Buffer
	stop           func() error // stops it and returns run's error; the test's cleanup stops it too
}

// startMock runs mockwx with env as its environment until stop or the end
// of the test.
func startMock(t *testing.T, env map[string]string) *runningMock {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &runningMock{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}}
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, m.stdout, m.stderr, func(a string) { addrc <- a })
	}()
	var once sync.Once
	var runErr error
	m.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("mockwx did not shut down")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := m.stop(); err != nil {
			t.Error(err)
		}
	})
	select {
	case m.addr = <-addrc:
	case err := <-done:
		t.Fatalf("run exited early: %v\n%s", err, m.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("mockwx did not start")
	}
	return m
}

func TestRunServesAndShutsDown(t *testing.T) {
	mw := startMock(t, map[string]string{mockwx.EnvSeed: "5", mockwx.EnvAdminToken: "adm"})
	addr, stdout, stderr := mw.addr, mw.stdout, mw.stderr
	base := "http://" + addr
	wc, err := wechat.NewClient(base, nil)
	require.NoError(t, err)
	tok, err := wc.Token(t.Context(), mockwx.DemoAppID, mockwx.DemoAppSecret)
	require.NoError(t, err)
	m := &wechat.TemplateMessage{ToUser: "oUser-cmd-0000001", TemplateID: "notice", Data: map[string]wechat.DataItem{"keyword1": {Value: "a"}, "keyword2": {Value: "b"}}}
	_, err = wc.SendTemplate(t.Context(), tok.AccessToken, m)
	require.NoError(t, err)
	st, err := mockwx.NewClient(base, "adm", nil).Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Delivered)

	out := stdout.String()
	assert.Contains(t, out, "seed: 5")
	assert.Contains(t, out, mockwx.DemoAppID)
	assert.Contains(t, out, "order_shipped")
	assert.Contains(t, out, "never expose it")

	require.NoError(t, mw.stop())
	// Logs are JSON lines.
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	var n int
	for sc.Scan() {
		var m map[string]any
		assert.NoError(t, json.Unmarshal(sc.Bytes(), &m), "not a JSON line: %s", sc.Text())
		n++
	}
	assert.Positive(t, n, "mockwx logs its start")
}

// TestHelpListsEverySetting: -h and --help print, to stdout, every
// environment variable mockwx reads (found in its source, so a new one
// fails this test until -h lists it), every flag with its variable and
// built-in default, -healthcheck and -version; never the admin token of
// the environment.
func TestHelpListsEverySetting(t *testing.T) {
	helpOf := func(arg string, env map[string]string) string {
		var stdout, stderr bytes.Buffer
		require.NoError(t, run(t.Context(), []string{arg}, func(k string) string { return env[k] }, &stdout, &stderr, func(string) {
			t.Errorf("-h must not serve")
		}), arg)
		assert.Empty(t, stderr.String())
		return stdout.String()
	}
	out := helpOf("-h", map[string]string{mockwx.EnvAdminToken: "admin-token-from-env", mockwx.EnvAddr: "127.0.0.1:1"})
	assert.Equal(t, out, helpOf("--help", nil), "-h and --help print the same, whatever the environment")
	assert.NotContains(t, out, "admin-token-from-env")
	assert.Contains(t, out, `(default ":9000")`)

	vars, err := envscan.Vars(".", "mockwx", "internal")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(vars), 10, "the scan finds mockwx's variables")
	for _, v := range vars {
		assert.Contains(t, out, v.Name, "mockwx reads %s (%s) but -h does not list it", v.Name, v.Pos)
	}
	for _, want := range []string{mockwx.EnvAppID, mockwx.EnvAppSecret, mockwx.EnvCallbackURL, mockwx.EnvCallbackToken,
		mockwx.EnvEncodingAESKey, mockwx.EnvCallbackMode, "LOG_LEVEL", "-healthcheck [URL]", "-version", mockwx.DemoAppID} {
		assert.Contains(t, out, want)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+) [a-z]+\n\s+(.*)$`)
	flags := flagLine.FindAllStringSubmatch(out, -1)
	assert.Len(t, flags, 7)
	for _, f := range flags {
		assert.Regexp(t, `\(env [A-Z_]+\)`, f[2], "-%s names its variable", f[1])
	}
}

// TestREADMEListsEverySetting: the README's mockwx table names every
// variable mockwx reads.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	require.NoError(t, err)
	vars, err := envscan.Vars(".", "mockwx", "internal")
	require.NoError(t, err)
	for _, v := range vars {
		assert.Contains(t, string(readme), "`"+v.Name+"`", "mockwx reads %s (%s) but the README does not list it", v.Name, v.Pos)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		var stdout, stderr bytes.Buffer
		require.NoError(t, run(t.Context(), []string{arg}, func(string) string { return "" }, &stdout, &stderr, nil))
		assert.Equal(t, "mockwx "+version.Version+"\n", stdout.String())
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"bad seed", []string{"-seed", "x"}, nil},
		{"bad log level", []string{"-log-level", "loud"}, nil},
		{"unknown flag", []string{"-nope"}, nil},
		{"stray argument", []string{"extra"}, nil},
		{"bad log level in the environment", nil, map[string]string{"LOG_LEVEL": "loud"}},
		{"bad mode", nil, map[string]string{mockwx.EnvCallbackMode: "loud"}},
		{"missing config", []string{"-config", "/nonexistent/mock.yaml"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncbuf.Buffer
			args := append([]string{"-addr", "127.0.0.1:0"}, tt.args...)
			err := run(t.Context(), args, func(k string) string { return tt.env[k] }, &out, &errOut, func(string) {
				t.Errorf("should not have started")
			})
			assert.Error(t, err)
		})
	}
}

// TestRunHealthcheck: -healthcheck probes instead of serving: a 2xx answer
// is success, anything else (or nothing listening) an error.
func TestRunHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	var out, errOut bytes.Buffer
	getenv := func(string) string { return "" }
	require.NoError(t, run(t.Context(), []string{"-healthcheck", srv.URL}, getenv, &out, &errOut, nil))
	status = http.StatusServiceUnavailable
	require.Error(t, run(t.Context(), []string{"-healthcheck", srv.URL}, getenv, &out, &errOut, nil))
	assert.Empty(t, out.String(), "a probe prints no banner")
}
