package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
	"github.com/wxpush/wxpush/service/internal/store"
)

// otherKey is a second API key of the rate limit tests.
const otherKey = "sk-test-other-key-0123456789"

// TestRateLimitPerKey: key A over its limit gets 429 with Retry-After and
// the rate_limited error, while key B is still served; the WeChat
// callback route and the probes are never limited; the 429s are counted
// by scope and key position, never by key.
func TestRateLimitPerKey(t *testing.T) {
	r := redistest.New(t)
	e := newEnv(t, func(o *Options) {
		o.APIKeys = []wechat.Secret{testKey, otherKey}
		o.Limiter = store.New(r.Client, store.Options{Prefix: r.Prefix})
		o.Limits = store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 0.1, Burst: 3}}
		o.Extra = func(g *gin.Engine) {
			g.POST("/wechat/callback/:app", func(c *gin.Context) { c.String(http.StatusOK, "success") })
		}
	})
	keyA := map[string]string{"Authorization": "Bearer " + testKey}
	keyB := map[string]string{"Authorization": "Bearer " + otherKey}
	for i := range 3 {
		if rec := e.do(t, http.MethodPost, "/v1/messages", validBody, keyA); rec.Code != http.StatusAccepted {
			t.Fatalf("key A request %d (within the burst): status %d (%s)", i, rec.Code, rec.Body)
		}
	}
	for i := range 3 {
		rec := e.do(t, http.MethodPost, "/v1/messages", validBody, keyA)
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("key A request %d over the limit: status %d, want 429 (%s)", 3+i, rec.Code, rec.Body)
		}
		if got := apiError(t, rec).Code; got != service.CodeRateLimited {
			t.Errorf("code %q, want %q", got, service.CodeRateLimited)
		}
		ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		if err != nil || ra < 1 || ra > 10 {
			t.Errorf("Retry-After = %q, want 1-10 seconds (one slot at 0.1/s)", rec.Header().Get("Retry-After"))
		}
	}
	if rec := e.do(t, http.MethodGet, "/v1/messages/msg-1", "", keyA); rec.Code != http.StatusTooManyRequests {
		t.Errorf("GET with key A: status %d, want 429: every /v1 route is limited", rec.Code)
	}
	if got := len(e.q.enqueued()); got != 3 {
		t.Errorf("%d messages enqueued, want 3: a refused request stores nothing", got)
	}
	for i := range 3 {
		if rec := e.do(t, http.MethodPost, "/v1/messages", validBody, keyB); rec.Code != http.StatusAccepted {
			t.Fatalf("key B request %d: status %d, want 202 (%s)", i, rec.Code, rec.Body)
		}
	}
	for i := range 20 {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if rec := e.do(t, http.MethodGet, path, "", keyA); rec.Code != http.StatusOK {
				t.Fatalf("GET %s (%d): status %d, want 200: probes are not limited", path, i, rec.Code)
			}
		}
		if rec := e.do(t, http.MethodPost, "/wechat/callback/default", "<xml/>", keyA); rec.Code != http.StatusOK {
			t.Fatalf("callback %d: status %d, want 200: the callback route is not limited", i, rec.Code)
		}
	}
	if got := counterValue(t, e.metrics.RateLimited.WithLabelValues(store.ScopeKey, "1")); got != 4 {
		t.Errorf("wxpush_http_rate_limited_total{scope=key,key=1} = %v, want 4", got)
	}
	if got := seriesCount(e.metrics.RateLimited); got != 1 {
		t.Errorf("%d rate limit series, want 1 (key 1 only)", got)
	}
	// A greedy client cannot flood the log: its 429s are at debug level.
	// No key reaches the log.
	logs := e.logs.String()
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `"status":429`) && !strings.Contains(line, `"level":"DEBUG"`) {
			t.Errorf("429 logged above debug: %s", line)
		}
	}
	if strings.Contains(logs, testKey) || strings.Contains(logs, otherKey) {
		t.Errorf("an API key reached the log")
	}
}

// TestRateLimitGlobal: the global limit refuses every key once the
// service's budget is used, with its own message and label.
func TestRateLimitGlobal(t *testing.T) {
	r := redistest.New(t)
	e := newEnv(t, func(o *Options) {
		o.APIKeys = []wechat.Secret{testKey, otherKey}
		o.Limiter = store.New(r.Client, store.Options{Prefix: r.Prefix})
		o.Limits = store.RequestLimits{Global: store.RequestLimit{PerSecond: 0.1, Burst: 2}}
	})
	keyA := map[string]string{"Authorization": "Bearer " + testKey}
	keyB := map[string]string{"Authorization": "Bearer " + otherKey}
	for _, hdr := range []map[string]string{keyA, keyB} {
		if rec := e.do(t, http.MethodPost, "/v1/messages", validBody, hdr); rec.Code != http.StatusAccepted {
			t.Fatalf("status %d within the global burst (%s)", rec.Code, rec.Body)
		}
	}
	rec := e.do(t, http.MethodPost, "/v1/messages", validBody, keyB)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("over the global limit: status %d, Retry-After %q; want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := counterValue(t, e.metrics.RateLimited.WithLabelValues(store.ScopeGlobal, "2")); got != 1 {
		t.Errorf("wxpush_http_rate_limited_total{scope=global,key=2} = %v, want 1", got)
	}
}

// TestRateLimitStoreDown: when the limiter cannot answer, requests go on
// (the store answers for itself) and the failure is counted.
func TestRateLimitStoreDown(t *testing.T) {
	r := redistest.New(t)
	s := store.New(r.Client, store.Options{Prefix: r.Prefix})
	e := newEnv(t, func(o *Options) {
		o.Limiter = s
		o.Limits = store.RequestLimits{PerKey: store.RequestLimit{PerSecond: 0.1, Burst: 1}}
	})
	_ = r.Client.Close()
	for i := range 3 {
		if rec := e.do(t, http.MethodPost, "/v1/messages", validBody, nil); rec.Code != http.StatusAccepted {
			t.Fatalf("request %d with the limiter down: status %d, want 202 (%s)", i, rec.Code, rec.Body)
		}
	}
	if got := counterValue(t, e.metrics.RedisErrors.WithLabelValues("rate_limit")); got != 3 {
		t.Errorf("wxpush_redis_errors_total{op=rate_limit} = %v, want 3", got)
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// seriesCount returns how many series a collector holds.
func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return len(ch)
}
