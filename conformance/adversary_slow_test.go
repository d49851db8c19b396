package conformance_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/slowconn"
	"github.com/wxpush/wxpush/internal/wechat"
)

// TestAdversarySlowClients: hundreds of connections send their headers
// and then trickle a body, a byte every 100 ms, to instance 0's
// POST /v1/messages and to its WeChat callback route (with a valid URL
// signature, so the body is what it waits for). Meanwhile normal sends go
// on and must all succeed, and the service must close every slow
// connection by itself, after its read timeout (2 s in-process and in
// containers; against an external deployment, its own setting, waited for
// up to 3 minutes).
func TestAdversarySlowClients(t *testing.T) {
	const readTimeout = 2 * time.Second
	opts := conformance.Options{Instances: 1, ReadTimeout: readTimeout, CallbackMode: "plain"}
	wait := 10 * readTimeout
	external := os.Getenv(conformance.EnvBackend) == "external"
	if external { // its settings are its own: no read timeout or callback mode to ask for
		opts, wait = conformance.Options{Instances: 1}, 3*time.Minute
	}
	env := conformance.New(t, opts)
	c := conformance.NewClient(env)
	u, err := url.Parse(env.ServiceURL(0))
	if err != nil {
		t.Fatal(err)
	}
	callback, err := c.HasRoute(t.Context(), 0, http.MethodPost, "/wechat/callback/default")
	if err != nil {
		t.Fatal(err)
	}

	perRoute := 150
	if limit := raiseFDLimit(t); limit < uint64(4*perRoute+512) { // in-process: both ends here
		perRoute = int(limit-512) / 4
	}
	query := ""
	if callback {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		query = url.Values{"signature": {wechat.Signature(env.App().CallbackToken, ts, "31337")}, "timestamp": {ts}, "nonce": {"31337"}}.Encode()
	}

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	planned := perRoute
	if callback {
		planned *= 2
	}
	var (
		slowMu         sync.Mutex // guards slow while it grows
		slow           []*slowconn.Conn
		sent, accepted atomic.Int64
		duringHold     atomic.Int64
		failures       sync.Map // status or error -> count
	)
	// held: at least a third of the planned slow connections are open at
	// once. (Not all of them: on a loaded machine opening 300 takes longer
	// than the read timeout, so the first is closed before the last opens.)
	held := func() bool {
		slowMu.Lock()
		defer slowMu.Unlock()
		open := 0
		for _, s := range slow {
			if !s.Closed() {
				open++
			}
		}
		return 3*open >= planned
	}
	var senders sync.WaitGroup
	for w := range 4 {
		senders.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				r, err := c.Send(ctx, 0, conformance.Order(conformance.OpenID(fmt.Sprintf("slow%d", w), n)), "")
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				switch {
				case err != nil:
					v, _ := failures.LoadOrStore(err.Error(), new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				case r.Code != http.StatusAccepted:
					v, _ := failures.LoadOrStore(strconv.Itoa(r.Code), new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				default:
					accepted.Add(1)
					if held() {
						duringHold.Add(1)
					}
				}
			}
		})
	}
	defer senders.Wait()
	defer stop()

	start := time.Now()
	for range perRoute {
		c := openTrickler(t, u.Host, "/v1/messages", "Authorization: Bearer "+env.APIKey()+"\r\nContent-Type: application/json\r\n", `{"touser":"`)
		slowMu.Lock()
		slow = append(slow, c)
		slowMu.Unlock()
		if callback {
			c := openTrickler(t, u.Host, "/wechat/callback/default?"+query, "Content-Type: text/xml\r\n", "<xml><ToUserName><![CDATA[")
			slowMu.Lock()
			slow = append(slow, c)
			slowMu.Unlock()
		}
	}
	go slowconn.Trickle(ctx, slow, 100*time.Millisecond)

	deadline := time.Now().Add(wait)
	open := len(slow)
	for open > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		open = 0
		for _, s := range slow {
			if !s.Closed() {
				open++
			}
		}
	}
	heldFor := time.Since(start)
	stop()
	senders.Wait()

	var failed []string
	failures.Range(func(k, v any) bool {
		failed = append(failed, fmt.Sprintf("%s ×%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	routes := "POST /v1/messages"
	if callback {
		routes += " and POST /wechat/callback/default"
	}
	t.Logf("adversary slow-clients (%s): tried %d connections trickling a body to %s of instance 0 with normal sends alongside, saw %d closed by the service within %s (read timeout %s), normal sends %d/%d accepted (%d while at least a third of the slow connections were open), failures %v",
		env.Backend(), len(slow), routes, len(slow)-open, heldFor.Round(100*time.Millisecond), readTimeoutOf(external, readTimeout), accepted.Load(), sent.Load(), duringHold.Load(), failed)
	if open > 0 {
		t.Errorf("%d of %d slow connections still open after %s: the service does not bound the time to read a request", open, len(slow), wait)
	}
	if len(failed) > 0 {
		t.Errorf("normal sends failed while slow clients were held: %v", failed)
	}
	if duringHold.Load() == 0 {
		t.Errorf("no normal send was accepted while the slow connections were held")
	}
}

func readTimeoutOf(external bool, d time.Duration) string {
	if external {
		return "the deployment's"
	}
	return d.String()
}

// openTrickler opens a slowconn.Conn to addr, or fails the test.
func openTrickler(t *testing.T, addr, target, header, prefix string) *slowconn.Conn {
	t.Helper()
	c, err := slowconn.Open(addr, target, header, prefix)
	if err != nil {
		t.Fatalf("slow request to %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// raiseFDLimit raises this process's soft open file limit to the hard one
// and returns it.
func raiseFDLimit(t *testing.T) uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			t.Logf("cannot raise the open file limit: %v", err)
		}
	}
	return l.Cur
}
