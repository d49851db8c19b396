package conformance_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/service"
)

// seed is the seed of the suites' random choices: WXPUSH_CONFORMANCE_SEED
// or 42, printed by the suites that use it.
func seed(t *testing.T) uint64 {
	if v := os.Getenv("WXPUSH_CONFORMANCE_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("WXPUSH_CONFORMANCE_SEED=%q: %v", v, err)
		}
		return n
	}
	return 42
}

func newRand(s uint64) *rand.Rand { return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15)) }

// load sends messages from several workers, round robin over the
// instances, until stop is called. It records what the API acknowledged.
type load struct {
	mu      sync.Mutex
	acked   []string
	codes   map[int]int
	errors  int // transport errors (an instance down)
	started time.Time
	stopped time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startLoad starts workers senders pausing pause between sends.
func startLoad(ctx context.Context, env conformance.Env, c *conformance.Client, suite string, workers int, pause time.Duration) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{codes: map[int]int{}, started: time.Now(), cancel: cancel}
	for w := range workers {
		l.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				i := (w + n) % env.Instances()
				r, err := c.Send(ctx, i, conformance.Order(conformance.OpenID(suite, w*1_000_000+n)), "")
				l.mu.Lock()
				switch {
				case err != nil:
					if ctx.Err() == nil {
						l.errors++
					}
				case r.Code == http.StatusAccepted:
					a, err := r.Accepted()
					if err == nil {
						l.acked = append(l.acked, a.ID)
					}
					l.codes[r.Code]++
				default:
					l.codes[r.Code]++
				}
				l.mu.Unlock()
				if err != nil {
					// An instance that is down: do not spin on it.
					pauseFor(ctx, 20*time.Millisecond)
				}
				pauseFor(ctx, pause)
			}
		})
	}
	return l
}

func pauseFor(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// stop ends the load and waits for its workers.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	l.stopped = time.Now()
}

func (l *load) snapshot() (acked []string, codes map[int]int, errs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	codes = map[int]int{}
	for k, v := range l.codes {
		codes[k] = v
	}
	return append([]string(nil), l.acked...), codes, l.errors
}

// sent accepts messages WeChat took (sent, or delivered by a report).
func sent(m service.Message) bool {
	return m.Status == service.StatusSent || m.Status == service.StatusDelivered
}

// sleep waits d or until the test's context ends.
func sleep(t *testing.T, d time.Duration) {
	pauseFor(t.Context(), d)
}

// checkExactlyOnce fails the test for every id the ledger does not show
// delivered exactly once, and returns how many were.
func checkExactlyOnce(t *testing.T, ledger map[string]*conformance.Sends, ids []string) int {
	t.Helper()
	ok, shown := 0, 0
	for _, id := range ids {
		s := ledger[id]
		n := 0
		if s != nil {
			n = s.Delivered
		}
		if n == 1 {
			ok++
			continue
		}
		if shown < 10 {
			t.Errorf("message %s delivered %d times (want exactly once); ledger %+v", id, n, s)
		}
		shown++
	}
	return ok
}

func readLedger(t *testing.T, env conformance.Env) map[string]*conformance.Sends {
	t.Helper()
	ledger, err := conformance.Ledger(t.Context(), env.Mock())
	if err != nil {
		t.Fatalf("mock ledger: %v", err)
	}
	return ledger
}

func stats(t *testing.T, env conformance.Env) (s struct {
	TokenCalls, SendCalls int64
	ByErrcode             map[string]int64
}) {
	t.Helper()
	st, err := conformance.Stats(t.Context(), env.Mock())
	if err != nil {
		t.Fatalf("mock stats: %v", err)
	}
	s.TokenCalls, s.SendCalls, s.ByErrcode = st.TokenCalls+st.StableTokenCalls, st.SendCalls, st.ByErrcode
	return s
}

func itoa(i int) string { return strconv.Itoa(i) }
