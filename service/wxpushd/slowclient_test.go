package wxpushd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/internal/slowconn"
	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// slowRequest opens a slowconn.Conn to addr; it may run on any goroutine:
// a failure fails the test.
func slowRequest(t *testing.T, addr, target, header, prefix string) *slowconn.Conn {
	c, err := slowconn.Open(addr, target, header, prefix)
	if err != nil {
		t.Errorf("slow request to %s: %v", addr, err)
		return nil
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fdLimit raises the test process's open file limit to its hard limit and
// returns it.
func fdLimit(t *testing.T) uint64 {
	t.Helper()
	var l syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l))
	if l.Cur < l.Max {
		l.Cur = l.Max
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l))
	}
	return l.Cur
}

// signedCallbackQuery is a callback query with a valid URL signature, as
// WeChat sends it.
func signedCallbackQuery(token string) string {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := "20261204"
	return url.Values{"signature": {wechat.Signature(token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}.Encode()
}

// TestSlowClientsAreCutOff: hundreds of connections that trickle a body,
// half to POST /v1/messages and half to the WeChat callback route, are
// held open while normal sends keep succeeding; the server closes every
// slow one after its read timeout (the API answers 408 first).
func TestSlowClientsAreCutOff(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	const cbToken = "slow-client-callback-token"
	cfg.Apps[0].CallbackToken = cbToken
	cfg.ReadTimeout, cfg.WriteTimeout = 3*time.Second, 6*time.Second
	cfg.NoWorkers, cfg.LogLevel = true, "info"
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}

	perRoute := 200
	if limit := fdLimit(t); limit < 4*uint64(perRoute)+512 { // both ends of each connection are in this process
		perRoute = int(limit-512) / 4
		t.Logf("open file limit %d: %d slow connections per route", limit, perRoute)
	}
	require.Greater(t, perRoute, 50, "the open file limit leaves room for too few connections")
	// Normal sends, on their own connections, from before the slow ones
	// open until every slow one is closed; those that completed once all
	// slow ones were open and none had been closed yet count as served
	// during the hold.
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var slow []*slowconn.Conn
	var opened atomic.Bool
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.Cleanup(client.CloseIdleConnections)
	var served, servedDuringHold, failed atomic.Int64
	openNow := func() int { // -1 until every slow connection is open
		if !opened.Load() {
			return -1
		}
		n := 0
		for _, s := range slow {
			if s != nil && !s.Closed() {
				n++
			}
		}
		return n
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				b := fmt.Appendf(nil, `{"touser":"oUser-slow-%d-%d","template_id":"order_shipped","data":{"thing1":{"value":"ok"}}}`, w, i)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/v1/messages", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+testAPIKey)
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if err != nil || resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
					if err == nil {
						resp.Body.Close()
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				served.Add(1)
				if opened.Load() && openNow() == len(slow) {
					servedDuringHold.Add(1)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return served.Load() > 0 }, 10*time.Second, 5*time.Millisecond, "normal sends are served")

	addr := strings.TrimPrefix(in.URL(), "http://")
	start := time.Now()
	slow = make([]*slowconn.Conn, 2*perRoute) // even: API, odd: callback
	var dials sync.WaitGroup
	for g := range 8 {
		dials.Go(func() {
			for i := g; i < perRoute; i += 8 {
				slow[2*i] = slowRequest(t, addr, "/v1/messages", "Authorization: Bearer "+testAPIKey+"\r\nContent-Type: application/json\r\n", `{"touser":"`)
				slow[2*i+1] = slowRequest(t, addr, "/wechat/callback/default?"+signedCallbackQuery(cbToken), "Content-Type: text/xml\r\n", "<xml><ToUserName><![CDATA[")
			}
		})
	}
	dials.Wait()
	opening := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	opened.Store(true)
	go slowconn.Trickle(ctx, slow, 100*time.Millisecond)

	deadline := time.After(30 * time.Second)
	for open := openNow(); open > 0; open = openNow() {
		select {
		case <-deadline:
			stop()
			wg.Wait()
			t.Fatalf("%d of %d slow connections still open after 30 s (read timeout %s); %d normal sends served", open, len(slow), cfg.ReadTimeout, served.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cutOff := time.Since(start)
	stop()
	wg.Wait()

	timedOut := 0
	for i, s := range slow {
		if i%2 == 0 && bytes.HasPrefix(s.Answer(), []byte("HTTP/1.1 408 ")) {
			timedOut++
		}
	}
	t.Logf("slow clients: %d held (%d API, %d callback; opened in %s), all closed by the server within %s (read timeout %s), %d API ones answered 408; normal sends meanwhile: %d served (%d while every slow connection was open), %d failed",
		len(slow), perRoute, perRoute, opening.Round(time.Millisecond), cutOff.Round(100*time.Millisecond), cfg.ReadTimeout, timedOut, served.Load(), servedDuringHold.Load(), failed.Load())
	assert.Zero(t, failed.Load(), "no normal send failed")
	assert.Positive(t, servedDuringHold.Load(), "normal sends were served while the slow connections were held")
	assert.Equal(t, perRoute, timedOut, "every slow API request was answered 408 request_timeout")
	for i, s := range slow {
		if i%2 == 0 && bytes.HasPrefix(s.Answer(), []byte("HTTP/1.1 408 ")) {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(s.Answer())), nil)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			assert.Contains(t, string(body), service.CodeRequestTimeout)
			break
		}
	}
}

// TestMaxConnsBound: with --max-conns connections open, the next client
// is not served (it waits to be accepted) until one of them closes; then
// it is.
func TestMaxConnsBound(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.MaxConns, cfg.ReadTimeout, cfg.WriteTimeout = 8, time.Minute, time.Minute
	cfg.NoWorkers = true
	in := startInstance(t, cfg)
	addr := strings.TrimPrefix(in.URL(), "http://")

	// Each held connection starts a POST with Expect: 100-continue and
	// waits for the 100 Continue the server sends when the handler reads
	// the body: the connection is then surely accepted and in a request
	// (not idle between two: idle ones give way to a waiting client, see
	// TestIdleConnectionsGiveWayToWeChat), and it never finishes the body.
	var held []net.Conn
	for range cfg.MaxConns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		br := bufio.NewReader(c)
		_, err = fmt.Fprintf(c, "POST /v1/messages HTTP/1.1\r\nHost: wxpushd\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", testAPIKey)
		require.NoError(t, err)
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Contains(t, line, "100 Continue")
		_, err = io.WriteString(c, "{")
		require.NoError(t, err)
		held = append(held, c)
	}

	get := func(timeout time.Duration) (int, error) {
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(in.URL() + "/healthz")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		return resp.StatusCode, nil
	}
	code, err := get(500 * time.Millisecond)
	require.Error(t, err, "served (status %d) with %d connections held and max-conns %d", code, len(held), cfg.MaxConns)
	for _, c := range held {
		_ = c.Close()
	}
	code, err = get(10 * time.Second)
	require.NoError(t, err, "a slot freed: the client is served")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, in.logs.String(), `"max_conns":8`, "the bound is logged")
}

// TestOpenFileLimitRaised: at start the soft open file limit is raised to
// the hard limit and logged, and max-conns is lowered to what the limit
// can hold.
func TestOpenFileLimitRaised(t *testing.T) {
	var l syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l))
	if l.Max < 2048 {
		t.Skipf("hard open file limit %d: too low to lower the soft one for the test", l.Max)
	}
	low := syscall.Rlimit{Cur: 1024, Max: l.Max}
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) })

	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	cfg := testConfig(mock, r)
	cfg.MaxConns = 1 << 30
	cfg.NoWorkers = true
	in := startInstance(t, cfg)
	a := api{t: t, base: in.URL(), key: testAPIKey}
	code, _, _ := a.do(http.MethodGet, "/healthz", nil, nil) // Run has started serving
	require.Equal(t, http.StatusOK, code)

	var now syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now))
	assert.Equal(t, l.Max, now.Cur, "the soft limit was raised to the hard one")
	logs := in.logs.String()
	assert.Contains(t, logs, `"msg":"open file limit"`)
	assert.Contains(t, logs, `"raised_from":1024`)
	assert.Contains(t, logs, fmt.Sprintf(`"soft":%d`, l.Max))
	assert.Contains(t, logs, "max-conns lowered to fit the open file limit")
	assert.Contains(t, logs, fmt.Sprintf(`"max_conns":%d`, int(l.Max)-fdReserve))
}
