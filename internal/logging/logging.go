// Package logging is the one slog setup of wxpushd, mockwx and wxload: JSON
// lines whose durations read as "1.5s" rather than nanoseconds, and a
// rate-limited bridge that turns go-redis's own log lines into such JSON
// lines instead of the plain text it writes to stderr by default.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel parses a LOG_LEVEL value (debug, info, warn or error, in any
// case, optionally with an offset such as info+2); the error names the
// accepted values.
func ParseLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", clip(s))
	}
	return level, nil
}

// ReplaceAttr is the slog.HandlerOptions.ReplaceAttr of every handler the
// programs make: a time.Duration value becomes its String() ("1.5s",
// "250ms"), which a reader understands and a log query can still parse,
// instead of the JSON handler's integer nanoseconds.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// HandlerOptions returns the handler options of the programs' logs at
// level: ReplaceAttr and the level.
func HandlerOptions(level slog.Leveler) *slog.HandlerOptions {
	return &slog.HandlerOptions{Level: level, ReplaceAttr: ReplaceAttr}
}

// New returns a logger that writes JSON lines to w at level.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, HandlerOptions(level)))
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
