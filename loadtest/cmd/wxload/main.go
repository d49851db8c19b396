// Command wxload runs declarative load scenarios against wxpushd with
// mockwx behind it, accounts for every message end to end, and writes a run
// directory with summary.json and an HTML report.
//
//	wxload run SCENARIO [--service URL --mock URL --api-key K] [--out DIR]
//	wxload demo | list | validate FILE | schema
//	wxload report RUNDIR | compare BASE NEW | index [DIR]
//	wxload run SCENARIO --shard I/N --run-id ID ... | merge DIR... [--out DIR] [--mock URL]
//	wxload help | version
//
// Exit status: 0 the expectations held, 1 an expectation failed (or the run
// could not complete), 2 bad usage or config. go-redis's own log lines (the
// embedded stack's Redis clients) come on stderr as rate-limited JSON lines.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/wxpush/wxpush/internal/logging"

	// The container stack (wxload run --stack containers).
	_ "github.com/wxpush/wxpush/internal/harness/containers"
	"github.com/wxpush/wxpush/loadtest/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	redisLog := logging.NewRedisLogger(logging.New(os.Stderr, slog.LevelInfo), logging.DefaultRedisLogLimit, logging.DefaultRedisLogInterval)
	redis.SetLogger(redisLog)
	code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	redisLog.Flush()
	stop()
	os.Exit(code)
}
