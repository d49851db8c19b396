package conformance_test

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/wxpush/wxpush/conformance"
	"github.com/wxpush/wxpush/service"
)

// TestAdversaryRateLimit: one API key sends as fast as it can, in turn to
// both instances, against an inbound limit of 2 requests/s with a burst of
// 5 shared through Redis. At most burst + rate × elapsed requests are
// accepted; the rest are answered 429 rate_limited with Retry-After. The
// probes and the WeChat callback route are never limited.
func TestAdversaryRateLimit(t *testing.T) {
	const rate, burst, n = 2.0, 5, 60
	env := conformance.New(t, conformance.Options{Instances: 2, InboundPerKey: rate, InboundBurst: burst})
	c := conformance.NewClient(env)
	ctx := t.Context()

	accepted, limited, badRetry := 0, 0, 0
	start := time.Now()
	for i := range n {
		r, err := c.Send(ctx, i%2, conformance.Order(conformance.OpenID("ratelimit", i)), "")
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		switch r.Code {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
			limited++
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || r.ErrorCode() != service.CodeRateLimited {
				badRetry++
			}
		default:
			t.Fatalf("send %d: status %d (%s)", i, r.Code, r.Body)
		}
	}
	elapsed := time.Since(start)
	bound := burst + int(math.Ceil(rate*elapsed.Seconds()))

	exempt := 0
	for i := range 20 {
		for _, path := range []string{"/healthz", "/readyz"} {
			r, err := c.Do(ctx, i%2, http.MethodGet, path, nil, nil)
			if err != nil || r.Code == http.StatusTooManyRequests {
				t.Errorf("GET %s: %v %d: the probes are not limited", path, err, r.Code)
			} else {
				exempt++
			}
		}
		r, err := c.Do(ctx, i%2, http.MethodPost, "/wechat/callback/default", nil, nil)
		if err != nil || r.Code == http.StatusTooManyRequests {
			t.Errorf("POST /wechat/callback/default: %v %d: the callback route is not limited", err, r.Code)
		} else {
			exempt++
		}
	}
	t.Logf("adversary rate-limit (%s): tried %d sends with one key over %s to 2 instances (limit %g/s, burst %d), saw %d accepted (bound %d), %d answered 429 (%d without a proper Retry-After), %d probe and callback requests not limited",
		env.Backend(), n, elapsed.Round(time.Millisecond), rate, burst, accepted, bound, limited, badRetry, exempt)
	if accepted > bound {
		t.Errorf("%d accepted over %s: more than burst + rate × elapsed = %d", accepted, elapsed, bound)
	}
	if accepted < burst {
		t.Errorf("%d accepted: less than the burst %d", accepted, burst)
	}
	if badRetry > 0 {
		t.Errorf("%d 429 answers lacked Retry-After or the rate_limited code", badRetry)
	}
}
