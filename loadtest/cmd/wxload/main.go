// Command wxload runs declarative load scenarios against wxpushd with
// mockwx behind it, accounts for every message end to end, and writes a run
// directory with summary.json and an HTML report.
//
//	wxload run SCENARIO [--service URL --mock URL --api-key K] [--out DIR]
//	wxload demo | list | validate FILE | schema
//	wxload report RUNDIR | compare BASE NEW | index [DIR]
//
// Exit status: 0 the expectations held, 1 an expectation failed (or the run
// could not complete), 2 bad usage or config.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// The container stack (wxload run --stack containers).
	_ "github.com/wxpush/wxpush/internal/harness/containers"
	"github.com/wxpush/wxpush/loadtest/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
