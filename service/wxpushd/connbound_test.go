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

// TestKeepAliveClientsKeepTheirConnections: making room for waiting
// clients must not cut a keep-alive client off between two requests. With
// every slot taken and a stream of connections dialled all the while
// (one every 2 ms, each held 20 ms, sending nothing), a client that posts over one
// keep-alive connection, request after request, loses none of them: a
// connection idle for a moment is about to be used again, and closing it
// resets the request already on its way.
func TestKeepAliveClientsKeepTheirConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := newConnBound(ln, 4)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
		}),
		ConnState:         l.connState,
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { _ = hs.Close() })
	addr := ln.Addr().String()

	// Two other clients hold a slot each, inside a request.
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
		require.NoError(t, err)
	}
	stop := make(chan struct{})
	dialled := make(chan int, 1)
	go func() {
		n := 0
		defer func() { dialled <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				n++
				time.AfterFunc(20*time.Millisecond, func() { _ = c.Close() })
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	const requests = 2000
	failed := 0
	var first error
	for range requests {
		resp, err := client.Post("http://"+addr+"/", "application/json", strings.NewReader(`{"k":"v"}`))
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	close(stop)
	n := <-dialled
	t.Logf("%d requests, %d failed, %d connections dialled meanwhile", requests, failed, n)
	require.Positive(t, n, "connections were dialled meanwhile")
	assert.Zero(t, failed, "requests cut off between two requests of a keep-alive client; first: %v", first)
}
