package conformance_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/internal/wechat"
)

// defaultFloor is the least share of the mock's direct absorption rate
// the pipeline must deliver. It is deliberately generous: the two rates
// are measured side by side on the same machine, but the pipeline pays for
// the API, Redis and the status writes, and make test runs it under the
// race detector on a busy machine. WXPUSH_CONFORMANCE_THROUGHPUT_FLOOR
// overrides it (e.g. 0.3 for a release machine without -race).
const defaultFloor = 0.05

// TestThroughput measures, side by side, how fast the mock absorbs
// template sends made directly (16 concurrent senders, one token) and how
// fast the pipeline delivers the same number of messages posted to the
// service (16 concurrent posters, spread over the instances, timed from
// the first post to the last delivery in the ledger). The ratio must be
// at least the floor.
func TestThroughput(t *testing.T) {
	floor := defaultFloor
	if v := os.Getenv("WXPUSH_CONFORMANCE_THROUGHPUT_FLOOR"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1 {
			t.Fatalf("WXPUSH_CONFORMANCE_THROUGHPUT_FLOOR=%q: want a ratio in (0, 1]", v)
		}
		floor = f
	}
	const n, conc = 600, 16
	env := conformance.New(t, conformance.Options{Workers: 16})
	c := conformance.NewClient(env)

	// Direct: the mock's absorption rate.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}, Timeout: 10 * time.Second}
	wc, err := wechat.NewClient(env.Mock().BaseURL(), hc)
	if err != nil {
		t.Fatal(err)
	}
	app := env.App()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	tok, err := wc.StableToken(ctx, app.AppID, wechat.Secret(app.Secret), false)
	cancel()
	if err != nil {
		t.Fatalf("direct token: %v", err)
	}
	order := conformance.Order("")
	data := map[string]wechat.DataItem{}
	for k, v := range order.Data {
		data[k] = wechat.DataItem{Value: v.Value}
	}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	var directErrs atomic.Int64
	for range conc {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				msg := &wechat.TemplateMessage{ToUser: conformance.OpenID("direct", int(i)), TemplateID: order.TemplateID,
					ClientMsgID: fmt.Sprintf("direct-%d", i), Data: data}
				if _, err := wc.SendTemplate(t.Context(), tok.AccessToken, msg); err != nil {
					directErrs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	direct := time.Since(start)
	if directErrs.Load() > 0 {
		t.Fatalf("direct sends: %d errors", directErrs.Load())
	}
	base, err := conformance.Stats(t.Context(), env.Mock())
	if err != nil {
		t.Fatal(err)
	}

	// The pipeline.
	next.Store(0)
	start = time.Now()
	var postErrs atomic.Int64
	for w := range conc {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				r, err := c.Send(t.Context(), w%env.Instances(), conformance.Order(conformance.OpenID("pipe", int(i))), "")
				if err != nil || r.Code != http.StatusAccepted {
					postErrs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	if postErrs.Load() > 0 {
		t.Fatalf("pipeline posts: %d not accepted", postErrs.Load())
	}
	if !conformance.Eventually(t.Context(), 120*time.Second, func(ctx context.Context) bool {
		st, err := conformance.Stats(ctx, env.Mock())
		return err == nil && st.Delivered-base.Delivered >= n
	}) {
		t.Fatalf("the pipeline did not deliver %d messages within 120 s", n)
	}
	pipeline := time.Since(start)
	directRate := float64(n) / direct.Seconds()
	pipeRate := float64(n) / pipeline.Seconds()
	ratio := pipeRate / directRate
	t.Logf("throughput [%s]: mock absorbs %.0f sends/s directly (%d in %s); pipeline delivers %.0f msg/s (%d accepted in %s, delivered in %s) = %.1f%% of direct, floor %.1f%%",
		env.Backend(), directRate, n, direct.Round(time.Millisecond), pipeRate, n, accepted.Round(time.Millisecond), pipeline.Round(time.Millisecond), ratio*100, floor*100)
	if ratio < floor {
		t.Errorf("the pipeline delivered %.1f%% of the mock's direct rate, below the floor of %.1f%%", ratio*100, floor*100)
	}
}
