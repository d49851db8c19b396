package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/mockwx"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// upLines runs Up in the background and hands back its output line by
// line; stop cancels it and returns Up's error.
func upLines(t *testing.T, opts UpOptions) (lines <-chan string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := Up(ctx, opts, pw)
		_ = pw.CloseWithError(io.EOF)
		errc <- err
	}()
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	var stopped bool
	var upErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			upErr = <-errc
		}
		return upErr
	}
	t.Cleanup(func() { _ = stop() })
	return ch, stop
}

// until reads lines up to and including the first that matches, and
// returns them.
func until(t *testing.T, lines <-chan string, match func(string) bool) []string {
	t.Helper()
	var got []string
	for l := range lines {
		got = append(got, l)
		if match(l) {
			return got
		}
	}
	t.Fatalf("the output ended without the line expected:\n%s", strings.Join(got, "\n"))
	return nil
}

// TestUpServesUntilCanceled starts wxload up's stack with two instances on
// free ports and checks what it prints is what it serves: messages sent
// with the printed key to each printed URL reach the mock and their
// delivery reports come back; a status line follows; Describe of the
// running stack prints the same first message; and cancelling stops
// every instance.
func TestUpServesUntilCanceled(t *testing.T) {
	logs := filepath.Join(t.TempDir(), "logs")
	lines, stop := upLines(t, UpOptions{
		Instances: 2, Addr: "127.0.0.1:0", MockAddr: "127.0.0.1:0", RedisURL: RedisMini,
		LogDir: logs, StatusEvery: 20 * time.Millisecond,
	})
	guide := strings.Join(until(t, lines, func(l string) bool { return l == "Running until Ctrl-C." }), "\n")

	urls := regexp.MustCompile(`(?m)^wxpushd +(.+)$`).FindStringSubmatch(guide)
	require.NotNil(t, urls, guide)
	services := strings.Fields(urls[1])
	require.Len(t, services, 2, "two instances: %s", urls[1])
	mockURL := regexp.MustCompile(`(?m)^mockwx +(\S+)`).FindStringSubmatch(guide)
	require.NotNil(t, mockURL, guide)
	for _, want := range []string{
		"API key   " + DevAPIKey, mockwx.DemoAppID, "safe mode", "order_shipped ", "payment_received ",
		"thing1:thing", upRecipients[0], mockwx.DemoNotFollowing, mockwx.DemoBlocked, "logs      " + logs,
		"curl -sS -H 'Authorization: Bearer " + DevAPIKey + "'", services[0] + "/v1/messages",
	} {
		assert.Contains(t, guide, want)
	}
	assert.NotContains(t, guide, "removed at exit", "a log directory that was asked for is kept")

	for i, u := range services {
		c, err := client.New(u, client.WithAPIKey(DevAPIKey))
		require.NoError(t, err)
		acc, _, err := c.Send(t.Context(), service.SendRequest{
			ToUser: upRecipients[i], TemplateID: "notice",
			Data: map[string]service.DataValue{"keyword1": {Value: "a"}, "keyword2": {Value: "b"}},
		}, "")
		require.NoError(t, err, "instance %s", u)
		waitStatus(t, c, acc.ID, service.StatusDelivered)
	}
	st, err := mockwx.NewClient(mockURL[1], "", nil).Stats(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(2), st.Delivered)
	until(t, lines, func(l string) bool { return strings.Contains(l, "mockwx: 2 template sends (2 accepted)") })

	var described strings.Builder
	require.NoError(t, Describe(t.Context(), Deployment{Services: services, MockURL: mockURL[1], APIKey: DevAPIKey}, &described))
	script := guide[strings.Index(guide, "resp=$(curl"):strings.Index(guide, "Running until")]
	assert.Contains(t, described.String(), strings.TrimSpace(script), "Describe prints the first message Up prints")
	assert.Contains(t, described.String(), services[1])
	other := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 1, Config: mockwx.Config{NoDemoApp: true,
		Apps: []mockwx.App{{AppID: "wx0123456789abcdef", Secret: "s"}}}})
	err = Describe(t.Context(), Deployment{Services: services, MockURL: other.URL, APIKey: DevAPIKey}, io.Discard)
	assert.ErrorContains(t, err, "serves none of the apps of the mock")

	require.NoError(t, stop())
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	assert.Equal(t, "wxload up: stopped", rest[len(rest)-1])
	for _, u := range services {
		_, err := http.Get(u + "/healthz")
		assert.Error(t, err, "%s still answers after the stop", u)
	}
	_, err = os.Stat(filepath.Join(logs, "mockwx.log"))
	assert.NoError(t, err, "the logs are kept in --logs")
}

func waitStatus(t *testing.T, c *client.Client, id string, want service.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := c.Get(ctx, id)
		require.NoError(t, err)
		if m.Status == want {
			return
		}
		require.NotEqual(t, service.StatusFailed, m.Status, "message %s ended %s (%s), want %s", id, m.Status, m.Reason, want)
		select {
		case <-ctx.Done():
			t.Fatalf("message %s is still %s, want %s", id, m.Status, want)
		case <-tick.C:
		}
	}
}

// TestUpRefusesBadOptions: bad options (usage errors) and a taken address
// are errors that say what is wrong, before anything starts.
func TestUpRefusesBadOptions(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	tests := []struct {
		name  string
		opts  UpOptions
		want  string
		usage bool
	}{
		{"too many instances", UpOptions{Instances: 9}, "at most 8", true},
		{"address without port", UpOptions{Addr: "8080"}, "want HOST:PORT", true},
		{"port out of range", UpOptions{Addr: "127.0.0.1:70000"}, "from 0 to 65535", true},
		{"instances past the last port", UpOptions{Addr: "127.0.0.1:65535", Instances: 2}, "ports up to 65536", true},
		{"bad mock address", UpOptions{Addr: "127.0.0.1:0", MockAddr: "localhost"}, "--mock-addr", true},
		{"service port taken", UpOptions{Addr: taken.Addr().String(), MockAddr: "127.0.0.1:0"}, taken.Addr().String() + " is already in use", false},
		{"mock port taken", UpOptions{Addr: "127.0.0.1:0", MockAddr: taken.Addr().String()}, taken.Addr().String() + " is already in use", false},
		{"short API key", UpOptions{Addr: "127.0.0.1:0", MockAddr: "127.0.0.1:0", APIKey: "short"}, "at least 16", true},
		{"API key with a space", UpOptions{Addr: "127.0.0.1:0", MockAddr: "127.0.0.1:0", APIKey: "a key with spaces in it"}, "no space", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.LogDir = filepath.Join(t.TempDir(), "logs")
			var out strings.Builder
			err := Up(t.Context(), tt.opts, &out)
			require.Error(t, err)
			assert.Equal(t, tt.usage, errors.Is(err, ErrUsage), "%v: usage error", err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, out.String(), "nothing printed")
			_, statErr := os.Stat(tt.opts.LogDir)
			assert.True(t, os.IsNotExist(statErr), "nothing started: the log directory was created")
		})
	}
}

func TestInstanceAddrs(t *testing.T) {
	tests := []struct {
		first string
		n     int
		want  []string
	}{
		{"127.0.0.1:8080", 1, []string{"127.0.0.1:8080"}},
		{"127.0.0.1:8080", 3, []string{"127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"}},
		{":9090", 2, []string{"127.0.0.1:9090", "127.0.0.1:9091"}},
		{"0.0.0.0:0", 2, []string{"0.0.0.0:0", "0.0.0.0:0"}},
		{"[::1]:8080", 2, []string{"[::1]:8080", "[::1]:8081"}},
	}
	for _, tt := range tests {
		got, err := instanceAddrs(tt.first, tt.n)
		require.NoError(t, err, tt.first)
		assert.Equal(t, tt.want, got, "%s x%d", tt.first, tt.n)
	}
}

// TestFirstMessageScript: the body is a valid send of the app's first
// template (every field valid for the mock), to a recipient that follows,
// naming the app unless it is the default one; the script is valid shell.
func TestFirstMessageScript(t *testing.T) {
	only := mockwx.DemoApp()
	only.Followers = mockwx.Followers{Only: []string{"oOnlyFollower-000001"}}
	only.Templates = only.Templates[2:] // appointment_reminder: a const field
	tests := []struct {
		name, app  string
		a          mockwx.App
		wantApp    string
		wantToUser string
	}{
		{"demo app", "default", mockwx.DemoApp(), "", upRecipients[0]},
		{"named app, only some follow", "shop", only, "shop", "oOnlyFollower-000001"},
	}
	body := regexp.MustCompile(`(?m)^  -d '(.*)' \\$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FirstMessageScript("http://127.0.0.1:8080/", "key-0123456789abcdef", tt.app, tt.a)
			require.NoError(t, err)
			m := body.FindStringSubmatch(s)
			require.NotNil(t, m, s)
			var req service.SendRequest
			require.NoError(t, json.Unmarshal([]byte(m[1]), &req))
			assert.Equal(t, tt.wantApp, req.App)
			assert.Equal(t, tt.wantToUser, req.ToUser)
			assert.Equal(t, tt.a.Templates[0].ID, req.TemplateID)
			data := map[string]string{}
			for k, v := range req.Data {
				data[k] = v.Value
			}
			assert.Empty(t, mockwx.ValidateData(tt.a.Templates[0].Fields, data))
			assert.Contains(t, s, "http://127.0.0.1:8080/v1/messages)\n", "one slash")
			assert.NotContains(t, s, "#", "no comments: zsh does not take them when pasted")
			if _, err := exec.LookPath("bash"); err == nil {
				out, err := exec.Command("bash", "-n", "-c", s).CombinedOutput()
				assert.NoError(t, err, "bash -n: %s", out)
			}
		})
	}
	_, err := FirstMessageScript("http://x", "key-0123456789abcdef", "default", mockwx.App{AppID: "wx0123456789abcdef"})
	assert.ErrorContains(t, err, "no template")
}

// TestShellQuote: what the shell reads back is the string quoted.
func TestShellQuote(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	for _, s := range []string{"plain", "it's", `a "b" $c \d`, "''", "订单 `x`"} {
		out, err := exec.Command("bash", "-c", "printf %s "+shellQuote(s)).Output()
		require.NoError(t, err, s)
		assert.Equal(t, s, string(out))
	}
}

// TestDescribeRefuses: a deployment without its URLs or key, or whose
// service serves none of the mock's apps, is refused with a clear error.
func TestDescribeRefuses(t *testing.T) {
	var out strings.Builder
	err := Describe(t.Context(), Deployment{Services: []string{"http://127.0.0.1:1"}}, &out)
	assert.True(t, errors.Is(err, ErrUsage), "%v", err)

	mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 1})
	err = Describe(t.Context(), Deployment{Services: []string{"http://127.0.0.1:1"}, MockURL: mock.URL, APIKey: DevAPIKey}, &out)
	assert.ErrorContains(t, err, "service at http://127.0.0.1:1")
	assert.Empty(t, out.String())
}

func TestRedactURLAndLoopback(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0":               "redis://127.0.0.1:6379/0",
		"redis://:hunter2@10.0.0.1:6379/0":       "redis://:xxxxx@10.0.0.1:6379/0",
		"rediss://user:hunter2@redis.example/1":  "rediss://user:xxxxx@redis.example/1",
		"redis://127.0.0.1:6379/0?master_name=m": "redis://127.0.0.1:6379/0?master_name=m",
	} {
		got := redisurl.Redacted(in)
		assert.Equal(t, want, got, in)
		assert.NotContains(t, got, "hunter2")
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:9000": true, "[::1]:9000": true, "localhost:9000": true,
		"0.0.0.0:9000": false, "[::]:9000": false, "192.168.1.2:9000": false,
	} {
		assert.Equal(t, want, isLoopback(addr), addr)
	}
}
