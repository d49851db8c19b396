package pacing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseReset(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"", "00:00 Asia/Shanghai"},
		{"00:00", "00:00 Asia/Shanghai"},
		{"04:30", "04:30 Asia/Shanghai"},
		{"23:59 UTC", "23:59 UTC"},
		{" 08:00  Europe/Berlin ", "08:00 Europe/Berlin"},
	} {
		r, err := ParseReset(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, r.String(), tt.in)
	}
	for _, bad := range []string{"24:00", "7:00", "07:60", "noon", "07:00 Mars/Olympus", "07-00"} {
		_, err := ParseReset(bad)
		assert.Error(t, err, bad)
	}
}

func TestResetNextAndDay(t *testing.T) {
	r := DefaultReset()
	// 2026-11-23 15:59:59 UTC is 23:59:59 in Shanghai: the reset is a second away.
	now := time.Date(2026, 11, 23, 15, 59, 59, 0, time.UTC)
	assert.True(t, r.Next(now).Equal(time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)), "got %s", r.Next(now))
	assert.Equal(t, "20261123", r.Day(now))
	assert.Equal(t, "20261124", r.Day(now.Add(time.Second)))
	// Exactly at the reset, the next one is a day later.
	at := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	assert.True(t, r.Next(at).Equal(at.Add(24*time.Hour)))

	four, err := ParseReset("04:00")
	require.NoError(t, err)
	// 01:00 in Shanghai on the 24th still belongs to the quota day of the 23rd.
	early := time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC)
	assert.Equal(t, "20261123", four.Day(early))
	assert.True(t, four.Next(early).Equal(time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)))
}

func TestRate(t *testing.T) {
	assert.False(t, Rate{}.Limited())
	assert.Zero(t, Rate{}.Interval())
	r := Rate{PerSecond: 20, Burst: 5}
	assert.InDelta(t, 50, r.Interval(), 1e-9)
	assert.InDelta(t, 200, r.Tolerance(), 1e-9)
	assert.Zero(t, Rate{PerSecond: 20}.Tolerance(), "burst defaults to 1")
}
