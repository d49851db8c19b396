package loadtest

import (
	"math"
	"sort"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Series is series.json: the run's figures second by second, for the
// charts of the HTML report. Second 0 starts with the load.
type Series struct {
	Start   time.Time `json:"start"`
	Seconds []Second  `json:"seconds"`
	// AttackEnd is when the load ended and End when the run's figures
	// end (the drain's end), in seconds since Start: the buckets they fall
	// in are partial seconds.
	AttackEnd float64 `json:"attack_end,omitempty"`
	End       float64 `json:"end,omitempty"`
	// Bands are the intervals during which a fault rule or a timeline
	// action was in effect, drawn behind the time charts.
	Bands []Band `json:"bands"`
	// Spectrum is the accept latency percentile spectrum (percentile ->
	// milliseconds) of the whole attack, for a log-axis chart.
	Spectrum []SpectrumPoint `json:"spectrum"`
	// E2ESpectrum is the same for end-to-end delivery latency (send to
	// the mock's receipt), ConfirmedSpectrum for send to the delivery
	// report's application.
	E2ESpectrum       []SpectrumPoint `json:"e2e_spectrum"`
	ConfirmedSpectrum []SpectrumPoint `json:"confirmed_spectrum"`
}

// Second is one second of the run.
type Second struct {
	T          int     `json:"t"`
	TargetRate float64 `json:"target_rate"`
	Sent       int     `json:"sent"`     // requests started in this second
	OK         int     `json:"ok"`       // answered 2xx
	Errors     int     `json:"errors"`   // transport errors and non-2xx
	Accepted   int     `json:"accepted"` // new messages acknowledged
	Replayed   int     `json:"replayed"`
	// Accept latency of the requests started in this second.
	LatencyMS Percentiles `json:"latency_ms"`
	// Delivered counts first deliveries the mock received in this second;
	// E2EMS is their send-to-receipt latency.
	Delivered int         `json:"delivered"`
	E2EMS     Percentiles `json:"e2e_ms"`
	// Confirmed counts delivery reports the service applied in this
	// second; ConfirmedMS is their send-to-confirmation latency.
	Confirmed   int         `json:"confirmed"`
	ConfirmedMS Percentiles `json:"confirmed_ms"`
	// Failed counts messages the service reported failed in this second
	// (by the status's updated_at).
	Failed int `json:"failed"`
	// From the instances' metrics, sampled in this second.
	QueueDepth     float64 `json:"queue_depth"`
	TokenRefreshes float64 `json:"token_refreshes"` // cumulative since the start; never goes down
	Retries        float64 `json:"retries"`         // cumulative since the start; never goes down
	InstancesUp    int     `json:"instances_up"`
	// MockErrcodes counts the mock's answers in this second by errcode
	// (sends of this run, from the ledger).
	MockErrcodes map[string]int `json:"mock_errcodes,omitempty"`
}

// Band is a fault or action interval, in seconds since the start.
type Band struct {
	Name  string  `json:"name"`
	Kind  string  `json:"kind"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// SpectrumPoint is one point of a percentile spectrum.
type SpectrumPoint struct {
	Percentile float64 `json:"percentile"`
	MS         float64 `json:"ms"`
}

// seriesBuilder accumulates per-second figures.
type seriesBuilder struct {
	start   time.Time
	seconds map[int]*secondAcc
}

type secondAcc struct {
	Second
	lat, e2e, conf *hdrhistogram.Histogram
	sampled        bool // the metrics were sampled in this second
}

func newSeriesBuilder(start time.Time) *seriesBuilder {
	return &seriesBuilder{start: start, seconds: map[int]*secondAcc{}}
}

func (b *seriesBuilder) at(t time.Time) *secondAcc {
	i := max(int(t.Sub(b.start)/time.Second), 0)
	s, ok := b.seconds[i]
	if !ok {
		s = &secondAcc{Second: Second{T: i}}
		b.seconds[i] = s
	}
	return s
}

// record adds a latency in microseconds to *h, creating it.
func record(h **hdrhistogram.Histogram, us int64) {
	if *h == nil {
		*h = hdrhistogram.New(1, int64(2*time.Hour/time.Microsecond), 2)
	}
	_ = (*h).RecordValue(us)
}

func (s *secondAcc) latency(us int64) { record(&s.lat, us) }

// delivered counts a first delivery; a negative latency (a clock behind
// this one) counts the delivery but not its latency.
func (s *secondAcc) delivered(us int64) {
	s.Delivered++
	if us >= 0 {
		record(&s.e2e, us)
	}
}

// confirmed counts an applied delivery report, like delivered.
func (s *secondAcc) confirmed(us int64) {
	s.Confirmed++
	if us >= 0 {
		record(&s.conf, us)
	}
}

func (s *secondAcc) errcode(code string) {
	if s.MockErrcodes == nil {
		s.MockErrcodes = map[string]int{}
	}
	s.MockErrcodes[code]++
}

// build returns the seconds in order, with gaps filled and metric samples
// carried forward.
func (b *seriesBuilder) build(rate func(time.Duration) float64) []Second {
	last := 0
	for i := range b.seconds {
		last = max(last, i)
	}
	out := make([]Second, 0, last+1)
	var prev Second
	// Before the first metrics sample, show the first sample's count of
	// instances rather than zero (the counters start at zero anyway).
	for i := 0; i <= last; i++ {
		if s, ok := b.seconds[i]; ok && s.sampled {
			prev.InstancesUp = s.InstancesUp
			break
		}
	}
	for i := 0; i <= last; i++ {
		s, ok := b.seconds[i]
		if !ok {
			s = &secondAcc{Second: Second{T: i}}
		}
		sec := s.Second
		sec.TargetRate = rate(time.Duration(i)*time.Second + time.Second/2)
		if s.lat != nil {
			sec.LatencyMS = percentiles(s.lat)
		}
		if s.e2e != nil {
			sec.E2EMS = percentiles(s.e2e)
		}
		if s.conf != nil {
			sec.ConfirmedMS = percentiles(s.conf)
		}
		if !s.sampled { // no sample this second
			sec.QueueDepth, sec.TokenRefreshes, sec.Retries, sec.InstancesUp = prev.QueueDepth, prev.TokenRefreshes, prev.Retries, prev.InstancesUp
		}
		out = append(out, sec)
		prev = sec
	}
	return out
}

// spectrum samples a histogram at percentiles spaced for a log axis
// (50, 75, 87.5, ... 99.999, 100).
func spectrum(h *hdrhistogram.Histogram) []SpectrumPoint {
	if h.TotalCount() == 0 {
		return []SpectrumPoint{}
	}
	var pts []SpectrumPoint
	for _, p := range []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100} {
		pts = append(pts, SpectrumPoint{Percentile: p, MS: float64(h.ValueAtQuantile(p)) / 1000})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].Percentile < pts[j].Percentile })
	for i := range pts {
		if math.IsNaN(pts[i].MS) {
			pts[i].MS = 0
		}
	}
	return pts
}
