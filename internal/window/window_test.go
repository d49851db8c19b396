package window

import (
	"testing"
	"time"
)

// TestMaxIn: the most events within any window of length w.
func TestMaxIn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	for _, tt := range []struct {
		name  string
		times []time.Time
		want  int
	}{
		{"none", nil, 0},
		{"500, 900, 1499 (unsorted input)", at(900, 0, 500, 1499, 2600), 3},
		{"a window is half-open", at(0, 1000, 2000), 1},
	} {
		if got := MaxIn(tt.times, time.Second); got != tt.want {
			t.Errorf("%s: MaxIn = %d, want %d", tt.name, got, tt.want)
		}
	}
}
