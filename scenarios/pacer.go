package scenarios

import (
	"math"
	"time"
)

// RateAt is the offered rate, in requests per second, at t after the start
// of the load (0 outside [0, duration)).
func (l Load) RateAt(t time.Duration) float64 {
	if t < 0 || t >= l.Duration.D() {
		return 0
	}
	p := l.Pacer
	s := t.Seconds()
	switch p.Type {
	case PacerLinear:
		return p.Rate + (p.To-p.Rate)*s/l.Duration.D().Seconds()
	case PacerSine:
		return p.Rate + p.Amp*math.Sin(2*math.Pi*s/p.Period.D().Seconds())
	case PacerSteps:
		var start time.Duration
		for _, st := range p.Steps {
			if t < start+st.Duration.D() {
				return st.Rate
			}
			start += st.Duration.D()
		}
		return 0
	default:
		return p.Rate
	}
}

// Hits is the number of requests offered in [0, t): the integral of RateAt.
func (l Load) Hits(t time.Duration) float64 {
	d := l.Duration.D()
	if t <= 0 {
		return 0
	}
	if t > d {
		t = d
	}
	p := l.Pacer
	s := t.Seconds()
	switch p.Type {
	case PacerLinear:
		return p.Rate*s + (p.To-p.Rate)*s*s/(2*d.Seconds())
	case PacerSine:
		w := 2 * math.Pi / p.Period.D().Seconds()
		return p.Rate*s + p.Amp*(1-math.Cos(w*s))/w
	case PacerSteps:
		var start time.Duration
		var n float64
		for _, st := range p.Steps {
			end := start + st.Duration.D()
			if t <= end {
				return n + st.Rate*(t-start).Seconds()
			}
			n += st.Rate * st.Duration.D().Seconds()
			start = end
		}
		return n
	default:
		return p.Rate * s
	}
}

// TotalHits is the number of requests the whole load offers.
func (l Load) TotalHits() float64 { return l.Hits(l.Duration.D()) }

// PeakRate is the highest offered rate.
func (l Load) PeakRate() float64 {
	p := l.Pacer
	switch p.Type {
	case PacerLinear:
		return math.Max(p.Rate, p.To)
	case PacerSine:
		return p.Rate + p.Amp
	case PacerSteps:
		var m float64
		for _, s := range p.Steps {
			m = math.Max(m, s.Rate)
		}
		return m
	default:
		return p.Rate
	}
}

// HitTime is when request n (0-based) is due: the t at which Hits(t)
// reaches n. Hits is non-decreasing, so a bisection finds it; it returns
// the load's duration when n is beyond the last request.
func (l Load) HitTime(n uint64) time.Duration {
	d := l.Duration.D()
	target := float64(n)
	if target <= 0 {
		return 0
	}
	if l.Hits(d) < target {
		return d
	}
	if l.Pacer.Type == PacerConstant || l.Pacer.Type == "" {
		return time.Duration(target / l.Pacer.Rate * float64(time.Second))
	}
	lo, hi := time.Duration(0), d
	for hi-lo > time.Microsecond {
		mid := lo + (hi-lo)/2
		if l.Hits(mid) < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
