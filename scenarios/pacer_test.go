package scenarios

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sec(s float64) Duration { return Duration(s * float64(time.Second)) }

// pacerCases are one load of each pacer type with its expected figures.
var pacerCases = []struct {
	name  string
	load  Load
	total float64
	peak  float64
	rates map[float64]float64 // t (s) -> RateAt
}{
	{
		name:  "constant",
		load:  Load{Duration: sec(10), Pacer: Pacer{Type: PacerConstant, Rate: 50}},
		total: 500, peak: 50,
		rates: map[float64]float64{0: 50, 3.3: 50, 9.999: 50, 10: 0, -1: 0},
	},
	{
		name:  "default type is constant",
		load:  Load{Duration: sec(4), Pacer: Pacer{Rate: 25}},
		total: 100, peak: 25,
		rates: map[float64]float64{0: 25, 2: 25},
	},
	{
		name:  "linear up",
		load:  Load{Duration: sec(10), Pacer: Pacer{Type: PacerLinear, Rate: 10, To: 110}},
		total: 600, peak: 110, // (10+110)/2 * 10
		rates: map[float64]float64{0: 10, 5: 60, 9: 100, 10: 0},
	},
	{
		name:  "linear from zero",
		load:  Load{Duration: sec(20), Pacer: Pacer{Type: PacerLinear, Rate: 0, To: 40}},
		total: 400, peak: 40,
		rates: map[float64]float64{0: 0, 10: 20},
	},
	{
		name:  "linear down",
		load:  Load{Duration: sec(10), Pacer: Pacer{Type: PacerLinear, Rate: 100, To: 20}},
		total: 600, peak: 100,
		rates: map[float64]float64{0: 100, 5: 60},
	},
	{
		name:  "sine whole periods",
		load:  Load{Duration: sec(20), Pacer: Pacer{Type: PacerSine, Rate: 100, Amp: 50, Period: sec(10)}},
		total: 2000, peak: 150, // whole periods: the sine integrates to 0
		rates: map[float64]float64{0: 100, 2.5: 150, 5: 100, 7.5: 50, 12.5: 150},
	},
	{
		name:  "sine half period",
		load:  Load{Duration: sec(5), Pacer: Pacer{Type: PacerSine, Rate: 100, Amp: 50, Period: sec(10)}},
		total: 500 + 50*2/(2*math.Pi/10), // rate*d + amp*(1-cos(pi))/w
		peak:  150,
		rates: map[float64]float64{2.5: 150},
	},
	{
		name: "steps",
		load: Load{Duration: sec(6), Pacer: Pacer{Type: PacerSteps, Steps: []Step{
			{Rate: 10, Duration: sec(2)}, {Rate: 0, Duration: sec(1)}, {Rate: 40, Duration: sec(3)},
		}}},
		total: 20 + 0 + 120, peak: 40,
		rates: map[float64]float64{0: 10, 1.999: 10, 2: 0, 2.5: 0, 3: 40, 5.9: 40, 6: 0},
	},
}

// TestPacerFigures: RateAt, TotalHits and PeakRate of each pacer type.
func TestPacerFigures(t *testing.T) {
	for _, tc := range pacerCases {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.total, tc.load.TotalHits(), 1e-6, "TotalHits")
			assert.InDelta(t, tc.total, tc.load.Hits(tc.load.Duration.D()), 1e-6, "Hits(duration)")
			assert.InDelta(t, tc.total, tc.load.Hits(tc.load.Duration.D()+time.Hour), 1e-6, "Hits after the end")
			assert.Zero(t, tc.load.Hits(0), "Hits(0)")
			assert.Zero(t, tc.load.Hits(-time.Second), "Hits(-1s)")
			assert.InDelta(t, tc.peak, tc.load.PeakRate(), 1e-9, "PeakRate")
			for at, want := range tc.rates {
				assert.InDelta(t, want, tc.load.RateAt(time.Duration(at*float64(time.Second))), 1e-6, "RateAt(%vs)", at)
			}
		})
	}
}

// TestPacerHitsIntegratesRate: Hits is the integral of RateAt (a midpoint
// sum over small slices), and is non-decreasing.
func TestPacerHitsIntegratesRate(t *testing.T) {
	for _, tc := range pacerCases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.load.Duration.D()
			const slices = 20000
			step := d / slices
			var sum, prev float64
			for i := range slices {
				t0 := time.Duration(i) * step
				sum += tc.load.RateAt(t0+step/2) * step.Seconds()
				h := tc.load.Hits(t0 + step)
				require.GreaterOrEqual(t, h, prev-1e-9, "Hits decreases at %s", t0+step)
				prev = h
				if i%1000 == 999 {
					assert.InDelta(t, h, sum, 0.01*math.Max(1, h), "Hits(%s) vs the integral of RateAt", t0+step)
				}
			}
		})
	}
}

// TestPacerHitTimeInvertsHits: request n is due when Hits reaches n, so
// Hits(HitTime(n)) is n (within the bisection's microsecond), HitTime is
// non-decreasing, and requests beyond the total are due at the end.
func TestPacerHitTimeInvertsHits(t *testing.T) {
	for _, tc := range pacerCases {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.load
			d := l.Duration.D()
			assert.Zero(t, l.HitTime(0))
			total := uint64(l.TotalHits())
			var prev time.Duration
			for n := uint64(1); n <= total; n++ {
				at := l.HitTime(n)
				require.GreaterOrEqual(t, at, prev, "HitTime(%d) < HitTime(%d)", n, n-1)
				require.LessOrEqual(t, at, d, "HitTime(%d)", n)
				prev = at
				// The rate is at most PeakRate, so a microsecond holds at
				// most PeakRate/1e6 hits.
				tol := l.PeakRate()*2e-6 + 1e-6
				assert.InDelta(t, float64(n), l.Hits(at), tol, "Hits(HitTime(%d)) = Hits(%s)", n, at)
				if at > time.Microsecond {
					assert.Less(t, l.Hits(at-2*time.Microsecond), float64(n), "HitTime(%d) = %s is not the first time Hits reaches %d", n, at, n)
				}
			}
			assert.Equal(t, d, l.HitTime(total+1), "beyond the last request")
			assert.Equal(t, d, l.HitTime(math.MaxUint64), "far beyond the last request")
		})
	}
}

// TestPacerConstantHitTime: the constant pacer's closed form spaces
// requests exactly 1/rate apart.
func TestPacerConstantHitTime(t *testing.T) {
	l := Load{Duration: sec(2), Pacer: Pacer{Type: PacerConstant, Rate: 4}}
	for n, want := range []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond, time.Second} {
		assert.Equal(t, want, l.HitTime(uint64(n)), "HitTime(%d)", n)
	}
}

// TestPacerStepsZeroRateGap: requests after a 0/s step are due after it.
func TestPacerStepsZeroRateGap(t *testing.T) {
	l := Load{Duration: sec(3), Pacer: Pacer{Type: PacerSteps, Steps: []Step{
		{Rate: 2, Duration: sec(1)}, {Rate: 0, Duration: sec(1)}, {Rate: 2, Duration: sec(1)},
	}}}
	assert.Equal(t, 500*time.Millisecond, l.HitTime(1).Round(time.Millisecond))
	assert.Equal(t, time.Second, l.HitTime(2).Round(time.Millisecond))
	assert.Equal(t, 2500*time.Millisecond, l.HitTime(3).Round(time.Millisecond), "the third request waits out the gap")
	assert.Equal(t, 3*time.Second, l.HitTime(4).Round(time.Millisecond))
}

// TestCatalogPacers: for every catalog scenario, Hits(duration) is
// TotalHits and HitTime of the last request falls within the load.
func TestCatalogPacers(t *testing.T) {
	all, err := Catalog()
	require.NoError(t, err)
	for _, sc := range all {
		l := sc.Load
		total := l.TotalHits()
		assert.InDelta(t, total, l.Hits(l.Duration.D()), 1e-9, sc.Name)
		last := uint64(total)
		at := l.HitTime(last)
		assert.LessOrEqual(t, at, l.Duration.D(), sc.Name)
		assert.InDelta(t, float64(last), l.Hits(at), l.PeakRate()*2e-6+1e-6, "%s: Hits(HitTime(%d))", sc.Name, last)
		assert.LessOrEqual(t, total/l.Duration.D().Seconds(), l.PeakRate()+1e-9, "%s: the mean rate exceeds the peak", sc.Name)
	}
}
