// Command wxpushd is the WeChat template message push service: an HTTP API
// that queues messages durably in Redis and workers that send them to
// WeChat with shared access tokens, retries and idempotency.
//
//	WXPUSH_API_KEYS=... WXPUSH_APP_ID=wx... WXPUSH_APP_SECRET=... WXPUSH_REDIS_URL=redis://127.0.0.1:6379/0 wxpushd
//
// Flags default to the WXPUSH_* environment variables (wxpushd -h lists
// them). Without WXPUSH_REDIS_URL it uses an embedded, non-durable store.
// `wxpushd -healthcheck [URL]` probes a running instance instead (default
// http://127.0.0.1:8080/readyz): the healthcheck of the FROM-scratch image.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wxpush/wxpush/internal/healthcheck"
	"github.com/wxpush/wxpush/service/wxpushd"
)

func main() {
	if url, ok := healthcheck.FromArgs(os.Args[1:], "http://127.0.0.1:8080/readyz"); ok {
		if err := healthcheck.Probe(context.Background(), url); err != nil {
			fmt.Fprintln(os.Stderr, "wxpushd -healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := wxpushd.LoadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wxpushd:", err)
		os.Exit(2)
	}
	srv, err := wxpushd.New(ctx, cfg, wxpushd.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wxpushd:", err)
		if errors.Is(err, wxpushd.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	defer srv.Close()
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wxpushd:", err)
		os.Exit(1)
	}
}
