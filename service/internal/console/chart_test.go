package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wxpush/wxpush/service"
)

func TestNiceCeil(t *testing.T) {
	for in, want := range map[int64]int64{0: 1, 1: 1, 2: 2, 3: 5, 5: 5, 6: 10, 11: 20, 199: 200, 201: 500, 999_999: 1_000_000} {
		assert.Equal(t, want, niceCeil(in), "niceCeil(%d)", in)
	}
}

// TestFailureChartGroupsRareReasons: the biggest reasons get a line each,
// the rest one "other" line with their sum; lines are scaled to the peak.
func TestFailureChartGroupsRareReasons(t *testing.T) {
	minutes := make([]service.Counts, 120)
	for i := range minutes {
		minutes[i].Minute = t0.Add(time.Duration(i-len(minutes)+1) * time.Minute)
	}
	// reason rN fails N+1 times in minute 0: r7 is the biggest.
	minutes[0].Failed = map[string]int64{}
	for n := range 8 {
		minutes[0].Failed[fmt.Sprintf("r%d", n)] = int64(n + 1)
	}
	minutes[119].Accepted = 7
	charts := buildCharts(minutes)
	require.Len(t, charts, 2)
	flow, failed := charts[0], charts[1]

	var names []string
	var totals []int64
	for _, s := range failed.Series {
		names = append(names, s.Name)
		totals = append(totals, s.Total)
	}
	assert.Equal(t, []string{"r7", "r6", "r5", "r4", "r3", "other"}, names)
	assert.Equal(t, []int64{8, 7, 6, 5, 4, 3 + 2 + 1}, totals)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 0}, []int64{failed.Series[0].LastHour, failed.Series[1].LastHour, failed.Series[2].LastHour,
		failed.Series[3].LastHour, failed.Series[4].LastHour, failed.Series[5].LastHour}, "minute 0 is two hours ago")
	assert.Equal(t, "10", failed.YTicks[len(failed.YTicks)-1].Text, "the axis tops at a round number above the peak")

	require.Equal(t, "accepted", flow.Series[0].Name)
	assert.Equal(t, int64(7), flow.Series[0].LastHour)
	pts := strings.Fields(flow.Series[0].Points)
	require.Len(t, pts, 120, "one point a minute")
	assert.Equal(t, fmt.Sprintf("%.1f,%.1f", flow.Plot.X0, flow.Plot.Y1), pts[0], "zero on the baseline, at the left edge")
	assert.Equal(t, fmt.Sprintf("%.1f,%.1f", flow.Plot.X1, flow.Plot.Y1-0.7*flow.Plot.H), pts[119], "7 of 10, at the right edge")
	assert.False(t, flow.Empty)
	assert.True(t, buildCharts(nil)[0].Empty)
}
