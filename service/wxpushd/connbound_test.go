package wxpushd

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// TestIdleConnectionsGiveWayToWeChat: connections that sent one probe
// each (no key needed) and stay idle hold every max-conns slot; WeChat's
// URL verification must still be served, by closing idle connections to
// make room, oldest first.
func TestIdleConnectionsGiveWayToWeChat(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	cfg := testConfig(mock, redistest.New(t))
	const cbToken = "idle-test-callback-token"
	cfg.Apps[0].CallbackToken = cbToken
	cfg.MaxConns = 8
	cfg.NoWorkers = true
	in := startInstance(t, cfg)
	addr := strings.TrimPrefix(in.URL(), "http://")
	idle := make([]net.Conn, 0, cfg.MaxConns)
	for range cfg.MaxConns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		idle = append(idle, c)
	}
	// Every slot is held by an idle keep-alive connection (the idle timeout
	// is 120 s). WeChat verifies the callback URL.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(in.URL() + "/wechat/callback/default?" + signedCallbackQuery(cbToken) + "&echostr=hello")
	require.NoError(t, err, "the callback route is starved by %d idle connections", cfg.MaxConns)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello", string(body))
	// The oldest idle connection made room: the server closed it.
	require.NoError(t, idle[0].SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = idle[0].Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the oldest idle connection was closed")
}

// TestConnBoundCloseEndsWaitingAccept: an Accept waiting for a slot
// returns when the listener is closed (graceful shutdown at saturation).
func TestConnBoundCloseEndsWaitingAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := newConnBound(ln, 1)
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	first, err := l.Accept()
	require.NoError(t, err)
	defer first.Close()
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	require.NoError(t, l.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
	// A connection's slot is given back once, however often it is closed.
	require.NoError(t, first.Close())
	_ = first.Close()
	assert.Empty(t, l.slots)
}
