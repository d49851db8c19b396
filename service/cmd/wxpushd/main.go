// Command wxpushd is the WeChat template message push service: an HTTP API
// that queues messages durably in Redis and workers that send them to
// WeChat with shared access tokens, retries and idempotency.
//
//	WXPUSH_API_KEYS=... WXPUSH_APP_ID=wx... WXPUSH_APP_SECRET=... WXPUSH_REDIS_URL=redis://127.0.0.1:6379/0 wxpushd
//
// Flags default to the WXPUSH_* environment variables (wxpushd -h lists
// them and every other setting). Without WXPUSH_REDIS_URL it uses an
// embedded, non-durable store. `wxpushd -healthcheck [URL]` probes a
// running instance instead (default http://127.0.0.1:8080/readyz): the
// healthcheck of the FROM-scratch image. `wxpushd -version` prints the
// version.
//
// Logs are JSON lines on stderr, go-redis's own lines included (at most
// logging.DefaultRedisLogLimit of them a minute, the rest counted).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/healthcheck"
	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/service/wxpushd"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit status. It installs the
// go-redis logger, which is process-wide.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if url, ok := healthcheck.FromArgs(args, wxpushd.DefaultHealthcheckURL); ok {
		if err := healthcheck.Probe(ctx, url); err != nil {
			fmt.Fprintln(stderr, "wxpushd -healthcheck:", err)
			return exitError
		}
		return exitOK
	}
	if version.Requested(args) {
		fmt.Fprintln(stdout, "wxpushd", version.Version)
		return exitOK
	}
	cfg, err := wxpushd.LoadConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "wxpushd: %v\n(wxpushd -h lists every setting)\n", err)
		return exitUsage
	}
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil { // LoadConfig checked it
		fmt.Fprintln(stderr, "wxpushd:", err)
		return exitUsage
	}
	log := logging.New(stderr, level)
	redisLog := logging.NewRedisLogger(log, logging.DefaultRedisLogLimit, logging.DefaultRedisLogInterval)
	redis.SetLogger(redisLog)
	defer redisLog.Flush()

	srv, err := wxpushd.New(ctx, cfg, wxpushd.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "wxpushd:", err)
		if errors.Is(err, wxpushd.ErrUsage) {
			return exitUsage
		}
		return exitError
	}
	defer srv.Close()
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "wxpushd:", err)
		return exitError
	}
	return exitOK
}
