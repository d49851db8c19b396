package mockwx_test

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

	"github.com/wxpush/wxpush/internal/wechat"
	"github.com/wxpush/wxpush/mockwx"
)

// bareSend is the baseline: a net/http handler that decodes the same JSON
// and returns a fixed reply.
func bareSend(w http.ResponseWriter, r *http.Request) {
	var m wechat.TemplateMessage
	body, err := io.ReadAll(r.Body)
	if err != nil || json.Unmarshal(body, &m) != nil {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_, _ = io.WriteString(w, `{"errcode":0,"errmsg":"ok","msgid":3717005636572528642}`)
}

// loadRound sends n template sends to url from conc workers over keep-alive
// connections and returns how long it took.
func loadRound(b *testing.B, client *http.Client, url string, n, conc int, seq *atomic.Int64) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				i := seq.Add(1)
				body := fmt.Appendf(nil, `{"touser":"oUser-bench-%06d","template_id":"order_shipped","client_msg_id":"wxp-%012d","data":{"thing1":{"value":"巧克力礼盒"},"character_string2":{"value":"SO-2026-%06d"},"time3":{"value":"2026年11月23日 15:01"},"phrase4":{"value":"已发货"}}}`, i%100000, i, i%1000000)
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				reply, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Contains(reply, []byte(`"errcode":0`)) {
					b.Errorf("status %d: %s", resp.StatusCode, reply)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkTemplateSendVsBare measures mockwx's template send against the
// bare baseline with the same load generator, in alternating rounds so both
// see the same machine noise, and reports both rates and their ratio
// (target: mockwx >= 70% of bare).
func BenchmarkTemplateSendVsBare(b *testing.B) {
	app := mockwx.DemoApp()
	app.TemplateDailyLimit = 1 << 40
	m, err := mockwx.New(mockwx.Config{NoDemoApp: true, Apps: []mockwx.App{app}}, mockwx.Options{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	mockSrv := httptest.NewServer(m)
	defer mockSrv.Close()
	bareSrv := httptest.NewServer(http.HandlerFunc(bareSend))
	defer bareSrv.Close()

	const conc = 16
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2, MaxIdleConns: conc * 4}}
	wc, _ := wechat.NewClient(mockSrv.URL, client)
	tok, err := wc.Token(b.Context(), app.AppID, wechat.Secret(app.Secret))
	if err != nil {
		b.Fatal(err)
	}
	mockURL := mockSrv.URL + wechat.PathTemplateSend + "?access_token=" + tok.AccessToken.Reveal()
	bareURL := bareSrv.URL + wechat.PathTemplateSend

	var seq atomic.Int64
	loadRound(b, client, bareURL, 500, conc, &seq) // warm up connections
	loadRound(b, client, mockURL, 500, conc, &seq)
	round := min(b.N, 2000)
	var bareTime, mockTime time.Duration
	var done int
	b.ResetTimer()
	for done < b.N {
		n := min(round, b.N-done)
		bareTime += loadRound(b, client, bareURL, n, conc, &seq)
		mockTime += loadRound(b, client, mockURL, n, conc, &seq)
		done += n
	}
	b.StopTimer()
	bareRate := float64(b.N) / bareTime.Seconds()
	mockRate := float64(b.N) / mockTime.Seconds()
	b.ReportMetric(bareRate, "bare_req/s")
	b.ReportMetric(mockRate, "mockwx_req/s")
	b.ReportMetric(mockRate/bareRate, "ratio")
	b.ReportMetric(float64(m.Ledger().MemoryBytes())/float64(max(m.Ledger().Len(), 1)), "ledger_B/entry")
}
