package loadtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSamplerOverlappingScrapesDoNotDoubleCount: the sampling loop and the
// timeline's scrape before a kill run scrapeAll concurrently. When the
// earlier-fetched scrape is applied after the later one, its lower values
// must not be taken for a restart (which keeps the whole count and starts
// again from zero, counting the process twice).
func TestSamplerOverlappingScrapesDoNotDoubleCount(t *testing.T) {
	var n atomic.Int32
	arrived, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1: // the baseline
			_, _ = io.WriteString(w, metricsText(0, 0, nil))
		case 2: // the loop's scrape: its values are read now, its answer ends later
			_, _ = io.WriteString(w, metricsText(90, 0, nil))
			w.(http.Flusher).Flush()
			close(arrived)
			<-release
		default: // the scrape before a kill, and every later one
			_, _ = io.WriteString(w, metricsText(100, 0, nil))
		}
	}))
	t.Cleanup(srv.Close)
	s := &sampler{urls: func() []string { return []string{srv.URL} }}
	ctx := t.Context()
	s.baseline(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.scrapeAll(ctx) }()
	<-arrived
	assert.Equal(t, 100.0, s.scrapeAll(ctx).figures.Sent)
	close(release)
	<-done
	final := s.scrapeAll(ctx).figures
	assert.Equal(t, 100.0, final.Sent, "one process that sent 100 during the run")
	assert.Zero(t, final.InstanceRestarts, "no instance restarted")
}
