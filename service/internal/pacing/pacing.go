// Package pacing holds the per-app pacing settings shared by the worker,
// the store and the status API: when an app's WeChat quota resets (the
// time of day and zone of quota_reset) and how its send rate is limited.
// The shared state itself (pauses, rate slots, waiting messages) lives in
// Redis; see package store (pacing.go) and package worker.
package pacing

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // Asia/Shanghai and other zones even on hosts without zoneinfo
)

// DefaultZone is WeChat's quota clock: daily quotas reset at midnight
// Asia/Shanghai.
const DefaultZone = "Asia/Shanghai"

// Reset is the time of day an app's daily quota resets.
type Reset struct {
	Hour, Minute int
	Loc          *time.Location
}

// DefaultReset is midnight Asia/Shanghai.
func DefaultReset() Reset {
	r, _ := ParseReset("")
	return r
}

// ParseReset parses "HH:MM" optionally followed by a space and an IANA
// zone ("04:00 Europe/Berlin"); the zone defaults to Asia/Shanghai and an
// empty string means "00:00 Asia/Shanghai".
func ParseReset(s string) (Reset, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = "00:00"
	}
	clock, zone, _ := strings.Cut(s, " ")
	zone = strings.TrimSpace(zone)
	if zone == "" {
		zone = DefaultZone
	}
	h, m, ok := strings.Cut(clock, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(h) != 2 || len(m) != 2 || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return Reset{}, fmt.Errorf("%q: want HH:MM (24 h), optionally followed by a time zone such as Asia/Shanghai", s)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return Reset{}, fmt.Errorf("%q: unknown time zone %q", s, zone)
	}
	return Reset{Hour: hh, Minute: mm, Loc: loc}, nil
}

func (r Reset) loc() *time.Location {
	if r.Loc == nil {
		return DefaultReset().Loc
	}
	return r.Loc
}

// Next returns the first reset strictly after now.
func (r Reset) Next(now time.Time) time.Time {
	t := now.In(r.loc())
	next := time.Date(t.Year(), t.Month(), t.Day(), r.Hour, r.Minute, 0, 0, r.loc())
	for !next.After(t) {
		next = time.Date(next.Year(), next.Month(), next.Day()+1, r.Hour, r.Minute, 0, 0, r.loc())
	}
	return next
}

// Day names the quota day now belongs to (yyyymmdd of the last reset), the
// key of the app's daily send counter.
func (r Reset) Day(now time.Time) string {
	t := now.In(r.loc())
	start := time.Date(t.Year(), t.Month(), t.Day(), r.Hour, r.Minute, 0, 0, r.loc())
	if t.Before(start) {
		start = start.AddDate(0, 0, -1)
	}
	return start.Format("20060102")
}

// String is the form ParseReset reads.
func (r Reset) String() string {
	return fmt.Sprintf("%02d:%02d %s", r.Hour, r.Minute, r.loc().String())
}

// Rate is an app's send rate limit across all instances: PerSecond
// messages a second (0: unlimited) with bursts of up to Burst messages
// (at least 1).
type Rate struct {
	PerSecond float64
	Burst     int
}

// Limited reports whether the rate limits anything.
func (r Rate) Limited() bool { return r.PerSecond > 0 }

// Interval is the time between two sends at the limit (GCRA's emission
// interval), in milliseconds; 0 when unlimited.
func (r Rate) Interval() float64 {
	if !r.Limited() {
		return 0
	}
	return 1000 / r.PerSecond
}

// Tolerance is GCRA's burst tolerance in milliseconds: (Burst-1) intervals.
func (r Rate) Tolerance() float64 {
	return float64(max(r.Burst, 1)-1) * r.Interval()
}
