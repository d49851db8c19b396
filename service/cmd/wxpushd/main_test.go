package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/envscan"
	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/version"
)

// runMainEnv makes the test binary run main instead of the tests: the
// tests that need a real process (stderr written by go-redis itself)
// start it as a child.
const runMainEnv = "WXPUSHD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// help runs wxpushd with arg (-h or --help) and returns its stdout; it
// must exit 0 with nothing on stderr.
func help(t *testing.T, arg string, env map[string]string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{arg}, envOf(env), &stdout, &stderr)
	require.Equal(t, 0, code, "wxpushd %s: exit status; stderr: %s", arg, stderr.String())
	assert.Empty(t, stderr.String(), "wxpushd %s writes to stdout", arg)
	return stdout.String()
}

// TestHelpListsEverySetting: -h and --help print, to stdout with exit 0,
// every environment variable the code reads (found in the source of
// wxpushd's packages, so a new variable fails this test until -h lists
// it), every flag with its variable, -healthcheck and -version; and never
// a value from the environment.
func TestHelpListsEverySetting(t *testing.T) {
	const secretKey, redisPassword = "api-key-from-the-environment-0001", "redis-password-from-env"
	env := map[string]string{"WXPUSH_API_KEYS": secretKey, "WXPUSH_REDIS_URL": "redis://:" + redisPassword + "@127.0.0.1:6379/0", "WXPUSH_WORKERS": "3"}
	out := help(t, "-h", env)
	assert.Equal(t, out, help(t, "--help", nil), "-h and --help print the same, whatever the environment")
	assert.NotContains(t, out, secretKey)
	assert.NotContains(t, out, redisPassword)
	assert.Contains(t, out, "(default 16)", "the built-in default, not the environment's")

	vars, err := envscan.Vars(".", "service", "internal")
	require.NoError(t, err)
	require.Greater(t, len(vars), 40, "the scan finds wxpushd's variables")
	for _, v := range vars {
		assert.Contains(t, out, v.Name, "wxpushd reads %s (%s) but -h does not list it", v.Name, v.Pos)
	}
	for _, want := range []string{"WXPUSH_APP_ID", "WXPUSH_APP_SECRET", "WXPUSH_CALLBACK_TOKEN", "WXPUSH_ENCODING_AES_KEY", "WXPUSH_CALLBACK_MODE",
		"LOG_LEVEL", "-healthcheck [URL]", "http://127.0.0.1:8080/readyz", "-version", "${VAR}"} {
		assert.Contains(t, out, want)
	}

	// Every flag names its variable, but the two that have none.
	flagLine := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	lines := strings.Split(out, "\n")
	var flags int
	for i, line := range lines {
		m := flagLine.FindStringSubmatch(line)
		if m == nil || i+1 == len(lines) || strings.HasPrefix(lines[i+1], "  -") {
			continue
		}
		flags++
		if m[1] == "insecure-no-auth" || m[1] == "no-workers" {
			continue
		}
		assert.Regexp(t, `\(env [A-Z_]+\)`, lines[i+1], "-%s names its variable", m[1])
	}
	assert.Greater(t, flags, 30)
}

// TestREADMEListsEverySetting: the README's settings table names every
// variable wxpushd reads.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	require.NoError(t, err)
	vars, err := envscan.Vars(".", "service", "internal")
	require.NoError(t, err)
	for _, v := range vars {
		assert.Contains(t, string(readme), "`"+v.Name+"`", "wxpushd reads %s (%s) but the README does not list it", v.Name, v.Pos)
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), []string{arg}, envOf(nil), &stdout, &stderr)
		assert.Equal(t, 0, code, arg)
		assert.Equal(t, "wxpushd "+version.Version+"\n", stdout.String(), arg)
	}
}

// TestBadSettings: exit 2 with the error and a pointer to -h on stderr.
func TestBadSettings(t *testing.T) {
	base := map[string]string{"WXPUSH_API_KEYS": "a-long-enough-api-key-01", "WXPUSH_APP_ID": "wx0123456789", "WXPUSH_APP_SECRET": "s"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"unknown flag", []string{"-nope"}, base, []string{"-nope"}},
		{"host:port redis URL", nil, with("WXPUSH_REDIS_URL", "127.0.0.1:6379"), []string{"has no scheme", "use redis://host:6379/0", "redis://127.0.0.1:6379/0"}},
		{"host:port/db redis URL", []string{"-redis-url", "localhost:6379/0"}, base, []string{"has no scheme", "redis://localhost:6379/0"}},
		{"bad log level", nil, with("LOG_LEVEL", "loud"), []string{"LOG_LEVEL", "want debug, info, warn or error"}},
		{"bad number in the environment", nil, with("WXPUSH_WORKERS", "many"), []string{`WXPUSH_WORKERS "many": want an integer`}},
		{"bad duration in the environment", nil, with("WXPUSH_RETENTION", "7"), []string{"WXPUSH_RETENTION", "want a duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, envOf(tt.env), &stdout, &stderr)
			assert.Equal(t, 2, code, stderr.String())
			for _, w := range tt.want {
				assert.Contains(t, stderr.String(), w)
			}
			assert.Contains(t, stderr.String(), "wxpushd -h lists every setting")
		})
	}
}

// TestDeadRedisLogsOnlyJSON runs wxpushd against a closed port: stderr
// holds JSON lines only, go-redis's own complaints among them as
// {"msg":"go-redis"} lines, no more than the limit, and durations as
// strings.
func TestDeadRedisLogsOnlyJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a wxpushd process")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := ln.Addr().String()
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-addr", "127.0.0.1:0")
	cmd.Env = []string{
		runMainEnv + "=1",
		"WXPUSH_API_KEYS=a-long-enough-api-key-01", "WXPUSH_APP_ID=wx0123456789", "WXPUSH_APP_SECRET=s",
		"WXPUSH_REDIS_URL=redis://" + deadAddr + "/0", "WXPUSH_WECHAT_BASE_URL=http://" + deadAddr,
		"WXPUSH_INSTANCE=dead-redis-test", "WXPUSH_SHUTDOWN_TIMEOUT=2s", "WXPUSH_CONSOLE=false",
	}
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+d)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// Read until go-redis has used up its log lines for the minute (each
	// is a dial in vain: the start's checks, then the partition-count
	// check retried every second, with the workers waiting for it), then
	// stop the process and read the rest.
	var lines []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	dials, stopped := 0, false
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if strings.Contains(line, `"msg":"`+logging.RedisMsg+`"`) {
			dials++
		}
		if dials == logging.DefaultRedisLogLimit && !stopped {
			stopped = true
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		}
	}
	_ = cmd.Wait()
	require.True(t, stopped, "wxpushd exited before go-redis logged %d failed dials:\n%s", logging.DefaultRedisLogLimit, strings.Join(lines, "\n"))

	var redisLines, suppressed int
	var sawDuration bool
	for _, line := range lines {
		var m map[string]any
		if !assert.NoError(t, json.Unmarshal([]byte(line), &m), "a stderr line that is not JSON: %s", line) {
			continue
		}
		switch m["msg"] {
		case logging.RedisMsg:
			redisLines++
			assert.Equal(t, "WARN", m["level"])
			assert.Contains(t, m["text"], deadAddr, line)
		case logging.RedisSuppressedMsg:
			suppressed += int(m["suppressed"].(float64))
		case "wxpushd shutting down":
			assert.Equal(t, "2s", m["timeout"], "a duration reads as a string: %s", line)
			sawDuration = true
		}
	}
	assert.Positive(t, redisLines, "go-redis's lines come through slog")
	assert.LessOrEqual(t, redisLines, logging.DefaultRedisLogLimit, "go-redis's lines are rate-limited")
	assert.True(t, sawDuration, "the shutdown line with its timeout")
	t.Logf("%d stderr lines: %d from go-redis, %d more suppressed", len(lines), redisLines, suppressed)
}
