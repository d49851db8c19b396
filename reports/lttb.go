package reports

import "math"

// point is one point of a chart line, in data units.
type point struct{ X, Y float64 }

// lttb downsamples pts to at most n points with the
// largest-triangle-three-buckets algorithm (Steinarsson 2013): the first
// and last points are kept, and from each bucket in between the point that
// makes the largest triangle with the previously kept point and the mean of
// the next bucket. Peaks survive, which matters for latency maxima. pts
// must be ordered by X. When n < 3 or pts is short it returns pts.
func lttb(pts []point, n int) []point {
	if n < 3 || len(pts) <= n {
		return pts
	}
	out := make([]point, 0, n)
	out = append(out, pts[0])
	every := float64(len(pts)-2) / float64(n-2)
	a := 0
	for i := 0; i < n-2; i++ {
		// The bucket after this one, for the average point.
		ns := int(math.Floor(float64(i+1)*every)) + 1
		ne := min(int(math.Floor(float64(i+2)*every))+1, len(pts))
		var ax, ay float64
		for _, p := range pts[ns:ne] {
			ax += p.X
			ay += p.Y
		}
		cnt := float64(ne - ns)
		ax, ay = ax/cnt, ay/cnt
		// This bucket.
		bs := int(math.Floor(float64(i)*every)) + 1
		be := int(math.Floor(float64(i+1)*every)) + 1
		best, bestArea := bs, -1.0
		pa := pts[a]
		for j := bs; j < be; j++ {
			area := math.Abs((pa.X-ax)*(pts[j].Y-pa.Y) - (pa.X-pts[j].X)*(ay-pa.Y))
			if area > bestArea {
				best, bestArea = j, area
			}
		}
		out = append(out, pts[best])
		a = best
	}
	return append(out, pts[len(pts)-1])
}
