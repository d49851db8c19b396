// Package window counts events in sliding time windows: how a rate limit
// is checked from the outside, by the times the events were seen.
package window

import (
	"slices"
	"time"
)

// MaxIn returns the most times within any half-open window [t, t+w),
// whatever the order of times.
func MaxIn(times []time.Time, w time.Duration) int {
	sorted := slices.Clone(times)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range sorted {
		for sorted[hi].Sub(sorted[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}
