package wxpushd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx/mockwxtest"
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/redistest"
)

// bareGin is the baseline: a bare Gin handler that decodes the same JSON
// and returns 202 with a fixed body.
func bareGin() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/v1/messages", func(c *gin.Context) {
		var req service.SendRequest
		if err := json.NewDecoder(c.Request.Body).Decode(&req); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "bad"})
			return
		}
		c.JSON(http.StatusAccepted, service.Accepted{ID: "06H0000000000000000000000", Status: service.StatusQueued})
	})
	return r
}

// acceptRound posts n messages from conc workers and returns the time taken.
func acceptRound(b *testing.B, client *http.Client, url string, n, conc int, seq *atomic.Int64) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				i := seq.Add(1)
				body := fmt.Appendf(nil, `{"touser":"oUser-bench-%06d","template_id":"order_shipped","data":{"thing1":{"value":"巧克力礼盒"},"character_string2":{"value":"SO-2026-%06d"},"time3":{"value":"2026年11月23日 15:01"},"phrase4":{"value":"已发货"}}}`, i%100000, i%1000000)
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testAPIKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkAcceptVsBareGin measures accepted messages/s through POST
// /v1/messages (auth, validation, idempotent enqueue into Redis: real Redis
// when REDIS_URL is set) against a bare Gin handler decoding the same JSON,
// with the same load generator in alternating rounds. Target: >= 60%.
func BenchmarkAcceptVsBareGin(b *testing.B) {
	mock := mockwxtest.NewServer(b, mockwxtest.Options{})
	r := redistest.New(b)
	cfg := Config{
		Addr: "127.0.0.1:0", RedisURL: r.URL, KeyPrefix: r.Prefix, WeChatBaseURL: mock.URL,
		APIKeys: []wechat.Secret{testAPIKey}, NoWorkers: true, LogLevel: "info", // production's default
		Apps: []AppConfig{{Name: "default", AppID: mock.App.AppID, Secret: wechat.Secret(mock.App.Secret)}},
	}
	in := startInstance(b, cfg)
	bare := httptest.NewServer(bareGin())
	defer bare.Close()

	const conc = 16
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2, MaxIdleConns: conc * 4}}
	var seq atomic.Int64
	svcURL, bareURL := in.URL()+"/v1/messages", bare.URL+"/v1/messages"
	acceptRound(b, client, bareURL, 500, conc, &seq)
	acceptRound(b, client, svcURL, 500, conc, &seq)
	round := min(b.N, 2000)
	var bareTime, svcTime time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		bareTime += acceptRound(b, client, bareURL, n, conc, &seq)
		svcTime += acceptRound(b, client, svcURL, n, conc, &seq)
	}
	b.StopTimer()
	bareRate, svcRate := float64(b.N)/bareTime.Seconds(), float64(b.N)/svcTime.Seconds()
	b.ReportMetric(bareRate, "bare_gin_req/s")
	b.ReportMetric(svcRate, "wxpushd_accepted/s")
	b.ReportMetric(svcRate/bareRate, "ratio")
	if r.Real() {
		b.ReportMetric(1, "real_redis")
	} else {
		b.ReportMetric(0, "real_redis")
	}
}
