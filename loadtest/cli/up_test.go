package cli

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/syncbuf"
	"github.com/wxpush/wxpush/loadtest"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
)

// TestUpRefuses: wxload up's bad usage exits 2 and says why; a deployment
// that does not answer exits 1.
func TestUpRefuses(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	mock := mockwxtest.NewServer(t, mockwxtest.Options{Seed: 1})
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"up", "--nope"}, ExitUsage, "flag provided but not defined"},
		{"an argument", []string{"up", "smoke"}, ExitUsage, `unexpected argument "smoke"`},
		{"address in use", []string{"up", "--addr", taken.Addr().String(), "--mock-addr", "127.0.0.1:0"}, ExitFailed, "is already in use"},
		{"bad instances", []string{"up", "--instances", "12"}, ExitUsage, "at most 8"},
		{"describe without key", []string{"up", "--service", "http://127.0.0.1:1", "--mock", mock.URL}, ExitUsage, "needs --service, --mock and --api-key"},
		{"describe a service that does not answer", []string{"up", "--service", "http://127.0.0.1:1", "--mock", mock.URL, "--api-key", loadtest.DevAPIKey}, ExitFailed, "service at http://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := wxload(t, nil, tt.args...)
			assert.Equal(t, tt.code, code, "stderr: %s", stderr)
			assert.Contains(t, stderr, tt.want)
			assert.Empty(t, stdout)
		})
	}
}

// TestUpRunsUntilCanceled: wxload up prints its guide and exits 0 when
// its context ends (main cancels it on SIGINT and SIGTERM).
func TestUpRunsUntilCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout := &signalWriter{marker: "Running until Ctrl-C.", seen: make(chan struct{})}
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"up", "--addr", "127.0.0.1:0", "--mock-addr", "127.0.0.1:0", "--redis", loadtest.RedisMini}, func(string) string { return "" }, stdout, &stderr)
	}()
	select {
	case <-stdout.seen:
	case code := <-done:
		t.Fatalf("wxload up exited %d before it was up: %s", code, stderr.String())
	}
	assert.Contains(t, stdout.String(), "API key   "+loadtest.DevAPIKey)
	cancel()
	assert.Equal(t, ExitPassed, <-done, "stderr: %s", stderr.String())
	assert.Contains(t, stdout.String(), "wxload up: stopped")
}

// signalWriter is a buffer that closes seen once marker was written.
type signalWriter struct {
	syncbuf.Buffer
	marker string
	seen   chan struct{}
	once   sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if strings.Contains(w.String(), w.marker) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}
