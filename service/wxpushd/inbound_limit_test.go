package wxpushd

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// TestInboundRateLimitAcrossInstances: two instances on one Redis share each API
// key's budget: key A, sending to both in turn, has at most burst + rate ×
// elapsed requests accepted and the rest answered 429 with Retry-After,
// while key B is served by both; the callback route is not limited.
func TestInboundRateLimitAcrossInstances(t *testing.T) {
	mock := mockwxtest.NewServer(t, mockwxtest.Options{})
	r := redistest.New(t)
	const otherKey = "test-other-api-key-0123456789"
	cfg := testConfig(mock, r)
	cfg.APIKeys = []wechat.Secret{testAPIKey, otherKey}
	cfg.RateLimitPerKey, cfg.RateBurstPerKey = 2, 4
	cfg.NoWorkers, cfg.LogLevel = true, "info"
	instances := []*instance{startInstance(t, cfg), startInstance(t, cfg)}

	accepted, limited := map[int]int{}, 0
	start := time.Now()
	const sent = 40
	for i := range sent {
		in := instances[i%2]
		a := api{t: t, base: in.URL(), key: testAPIKey}
		code, body, hdr := a.do(http.MethodPost, "/v1/messages", order(openid(900+i)), nil)
		switch code {
		case http.StatusAccepted:
			accepted[i%2]++
		case http.StatusTooManyRequests:
			limited++
			ra, err := strconv.Atoi(hdr.Get("Retry-After"))
			assert.NoError(t, err, "Retry-After %q", hdr.Get("Retry-After"))
			assert.GreaterOrEqual(t, ra, 1)
		default:
			t.Fatalf("request %d: status %d (%s)", i, code, body)
		}
	}
	elapsed := time.Since(start)
	bound := cfg.RateBurstPerKey + int(math.Ceil(cfg.RateLimitPerKey*elapsed.Seconds()))
	total := accepted[0] + accepted[1]
	t.Logf("key A: %d requests over %s to two instances: %d accepted (%d + %d), %d answered 429; bound burst + rate × elapsed = %d",
		sent, elapsed.Round(time.Millisecond), total, accepted[0], accepted[1], limited, bound)
	assert.LessOrEqual(t, total, bound, "the per-key limit holds across both instances")
	assert.GreaterOrEqual(t, total, cfg.RateBurstPerKey, "the burst is served")
	assert.Equal(t, sent, total+limited)

	for i, in := range instances {
		b := api{t: t, base: in.URL(), key: otherKey}
		code, body, _ := b.do(http.MethodPost, "/v1/messages", order(openid(990+i)), nil)
		assert.Equal(t, http.StatusAccepted, code, "key B on instance %d: %s", i, body)
		// The callback route is exempt (no callback configured: 404, not 429).
		c := api{t: t, base: in.URL(), key: testAPIKey}
		code, _, _ = c.do(http.MethodPost, "/wechat/callback/default", nil, nil)
		assert.NotEqual(t, http.StatusTooManyRequests, code)
	}
	var limitedSeen float64
	for _, in := range instances {
		limitedSeen += counter(t, in.Metrics().RateLimited.WithLabelValues(store.ScopeKey, "1"))
	}
	assert.Equal(t, float64(limited), limitedSeen, "every 429 counted, labelled with the key's position")
}
