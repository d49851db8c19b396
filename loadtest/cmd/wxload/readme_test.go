package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/loadtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/client"
)

// readmeBlock returns the body of the fenced block that follows the
// comment <!-- readme-test: name --> in the README.
func readmeBlock(t *testing.T, readme, name string) string {
	t.Helper()
	marker := "<!-- readme-test: " + name + " -->\n"
	i := strings.Index(readme, marker)
	require.NotEqual(t, -1, i, "README.md has no %q marker", strings.TrimSpace(marker))
	rest := readme[i+len(marker):]
	require.True(t, strings.HasPrefix(rest, "```sh\n"), "the %s marker must be followed by a ```sh fence", name)
	rest = strings.TrimPrefix(rest, "```sh\n")
	end := strings.Index(rest, "```\n")
	require.NotEqual(t, -1, end, "the %s block is not closed", name)
	return rest[:end]
}

// TestReadmeFirstMessage runs the README's quick start as a newcomer
// would: wxload up (the README's command, built and started as a separate
// process; its ports moved to free ones), then the README's curl block
// with bash. The message must be accepted and be delivered (its delivery report applied), the
// block must be what wxload up itself prints, and Ctrl-C must stop the
// stack cleanly.
func TestReadmeFirstMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wxload and starts the stack")
	}
	for _, tool := range []string{"bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	require.NoError(t, err)
	readme := string(raw)
	upBlock := strings.TrimSpace(readmeBlock(t, readme, "wxload-up"))
	script := readmeBlock(t, readme, "first-message")

	const prefix = "go run ./loadtest/cmd/wxload "
	require.False(t, strings.Contains(upBlock, "\n"), "the wxload-up block is one command: %q", upBlock)
	require.True(t, strings.HasPrefix(upBlock, prefix), "the wxload-up block runs %q...: %q", prefix, upBlock)
	args := strings.Fields(strings.TrimPrefix(upBlock, prefix))
	require.Equal(t, "up", args[0], "the wxload-up block runs wxload up: %q", upBlock)

	bin := filepath.Join(t.TempDir(), "wxload")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	// Built as make demo and make up-local build bin/wxload (static,
	// -trimpath), so the packages compiled for one are reused by the other.
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	// The README's fixed ports may be taken here (make up's compose stack
	// uses 9000): the same command on free ports; the block's URLs follow.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, bin, append(args, "--addr", "127.0.0.1:0", "--mock-addr", "127.0.0.1:0")...)
	// However the test ends, the stack gets Ctrl-C (its private
	// redis-server stops with it), and a kill if it hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		for range lines { // drain, so the reader reaches Wait
		}
		<-exited
	})

	// Everything up to "Running until Ctrl-C." is the guide.
	var printed strings.Builder
	var serviceURL, mockURL string
	for line := range lines {
		printed.WriteString(line + "\n")
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "wxpushd" {
			serviceURL = f[1]
		} else if len(f) >= 2 && f[0] == "mockwx" {
			mockURL = f[1]
		}
		if line == "Running until Ctrl-C." {
			break
		}
	}
	require.NotEmpty(t, serviceURL, "wxload up printed no wxpushd URL:\n%s\nstderr:\n%s", printed.String(), stderr.String())
	require.NotEmpty(t, mockURL, "wxload up printed no mockwx URL:\n%s", printed.String())

	require.Contains(t, script, "http://"+loadtest.DefaultUpAddr, "the block addresses wxload up's default wxpushd URL")
	script = strings.ReplaceAll(script, "http://"+loadtest.DefaultUpAddr, serviceURL)
	script = strings.ReplaceAll(script, "http://"+loadtest.DefaultUpMockAddr, mockURL)
	assert.Contains(t, printed.String(), script, "the README block is not what wxload up prints")

	run := exec.CommandContext(ctx, "bash", "-c", script)
	res, err := run.Output()
	require.NoError(t, err, "the README block failed:\n%s", res)
	outLines := strings.Split(strings.TrimSpace(string(res)), "\n")
	require.Len(t, outLines, 2, "the block prints the answer to the send and the message:\n%s", res)
	var acc service.Accepted
	require.NoError(t, json.Unmarshal([]byte(outLines[0]), &acc), "the send's answer: %s", outLines[0])
	require.NotEmpty(t, acc.ID, "the send's answer has no id: %s", outLines[0])
	var msg service.Message
	require.NoError(t, json.Unmarshal([]byte(outLines[1]), &msg), "the status read's answer: %s", outLines[1])
	assert.Equal(t, acc.ID, msg.ID, "the block reads the status of the message it sent")
	assert.Contains(t, []service.Status{service.StatusQueued, service.StatusSending, service.StatusSent, service.StatusDelivered}, msg.Status)

	c, err := client.New(serviceURL, client.WithAPIKey(loadtest.DevAPIKey))
	require.NoError(t, err)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// The README promises delivered (its delivery report applied), not
	// only sent: wait for that (the block's own read may come first on a
	// busy machine).
	for msg.Status != service.StatusDelivered {
		require.NotEqual(t, service.StatusFailed, msg.Status, "the README's message failed: %+v", msg)
		select {
		case <-ctx.Done():
			t.Fatalf("the README's message is still %s", msg.Status)
		case <-tick.C:
		}
		m, err := c.Get(ctx, acc.ID)
		require.NoError(t, err)
		msg = *m
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	var rest strings.Builder
	for line := range lines {
		rest.WriteString(line + "\n")
	}
	select {
	case <-exited:
		require.NoError(t, waitErr, "wxload up did not exit 0 on SIGINT; stderr:\n%s", stderr.String())
	case <-ctx.Done():
		t.Fatal("wxload up did not stop on SIGINT")
	}
	assert.Contains(t, rest.String(), "wxload up: stopped")
}

// TestReadmeStandsAlone fails when the README points outside the
// repository: a path climbing out of it (../), a Markdown link to a file
// that is not in the repository, or a web address other than loopback and
// example hosts, and WeChat's own API hosts named as facts (the README must be readable on a machine with nothing but
// the clone).
func TestReadmeStandsAlone(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	readme := string(raw)
	for n, line := range strings.Split(readme, "\n") {
		assert.NotContains(t, line, "../", "README.md:%d climbs out of the repository: %s", n+1, line)
	}
	for _, m := range regexp.MustCompile(`\]\(([^)\s]+)\)`).FindAllStringSubmatch(readme, -1) {
		target := m[1]
		if strings.HasPrefix(target, "#") {
			continue
		}
		if strings.Contains(target, "://") {
			t.Errorf("README.md links outside the repository: %s", target)
			continue
		}
		_, err := os.Stat(filepath.Join(root, strings.SplitN(target, "#", 2)[0]))
		assert.NoError(t, err, "README.md links to %s, which is not in the repository", target)
	}
	local := regexp.MustCompile(`^https?://(127\.0\.0\.1|localhost|\[::1\]|[a-z0-9.-]*example\.(com|org|net)|([a-z0-9]+\.)?api[0-9]?\.weixin\.qq\.com)([:/]|$)`)
	for _, u := range regexp.MustCompile(`https?://[^\s)"'`+"`"+`<>,]+`).FindAllString(readme, -1) {
		assert.Regexp(t, local, u, "README.md names an address outside the repository and the machine: %s", u)
	}
}
