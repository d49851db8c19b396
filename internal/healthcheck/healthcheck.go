// Package healthcheck lets wxpushd and mockwx serve as their own container
// healthcheck: FROM-scratch images have no shell or curl, so
// `wxpushd -healthcheck [URL]` GETs the URL and exits 0 on a 2xx answer,
// 1 otherwise, instead of starting the server.
package healthcheck

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Flag is the argument that asks a program to probe instead of serve.
const Flag = "-healthcheck"

// Timeout bounds one probe.
const Timeout = 3 * time.Second

// FromArgs reports whether args ask for a probe (-healthcheck or
// --healthcheck first, optionally followed by the URL, or -healthcheck=URL)
// and returns the URL to probe, def when none is given.
func FromArgs(args []string, def string) (url string, ok bool) {
	if len(args) == 0 {
		return "", false
	}
	name, value, hasValue := strings.Cut(args[0], "=")
	if name != Flag && name != "-"+Flag {
		return "", false
	}
	switch {
	case hasValue:
		return value, true
	case len(args) > 1:
		return args[1], true
	default:
		return def, true
	}
}

// Probe GETs url within Timeout and returns nil on a 2xx answer.
func Probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
