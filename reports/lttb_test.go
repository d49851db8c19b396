package reports

import (
	"math"
	"testing"
)

func TestLTTB(t *testing.T) {
	pts := make([]point, 10000)
	for i := range pts {
		pts[i] = point{X: float64(i), Y: math.Sin(float64(i) / 100)}
	}
	pts[4321].Y = 50 // a spike must survive
	got := lttb(pts, 300)
	if len(got) != 300 {
		t.Fatalf("lttb(10000 points, 300) kept %d points", len(got))
	}
	if got[0] != pts[0] || got[len(got)-1] != pts[len(pts)-1] {
		t.Error("lttb dropped an end point")
	}
	spike := false
	for i, p := range got {
		if i > 0 && p.X <= got[i-1].X {
			t.Fatalf("points out of order at %d: %v after %v", i, p, got[i-1])
		}
		spike = spike || p.Y == 50
	}
	if !spike {
		t.Error("lttb lost the spike")
	}
	if short := lttb(pts[:100], 300); len(short) != 100 {
		t.Errorf("lttb of a short series changed it: %d points", len(short))
	}
}

func TestDownsampleKeepsGaps(t *testing.T) {
	var pts []point
	for i := 0; i < 2000; i++ {
		y := float64(i % 7)
		if i >= 900 && i < 1100 {
			y = math.NaN()
		}
		pts = append(pts, point{X: float64(i), Y: y})
	}
	got := downsample(pts, 100)
	if len(got) > 110 {
		t.Errorf("downsample(2000, 100) kept %d points", len(got))
	}
	gap := false
	for _, p := range got {
		if math.IsNaN(p.Y) {
			gap = true
		}
		if !math.IsNaN(p.Y) && p.X >= 900 && p.X < 1100 {
			t.Errorf("a point inside the gap: %v", p)
		}
	}
	if !gap {
		t.Error("downsample closed the gap")
	}
}
