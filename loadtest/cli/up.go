package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/loadtest"
)

// up is wxload up: the embedded stack until Ctrl-C, or with --service a
// description of a running deployment.
func up(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxload up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var (
		opts     loadtest.UpOptions
		services multi
		dep      loadtest.Deployment
	)
	fs.IntVar(&opts.Instances, "instances", 1, "")
	fs.StringVar(&opts.Addr, "addr", loadtest.DefaultUpAddr, "")
	fs.StringVar(&opts.MockAddr, "mock-addr", loadtest.DefaultUpMockAddr, "")
	fs.StringVar(&opts.RedisURL, "redis", "", "")
	opts.ClusterPorts = getenv(rediscluster.PortsVar)
	fs.StringVar(&opts.APIKey, "api-key", "", "")
	fs.StringVar(&opts.LogDir, "logs", "", "")
	fs.Var(&services, "service", "")
	fs.StringVar(&dep.MockURL, "mock", "", "")
	fs.StringVar(&dep.MockToken, "mock-token", getenv("MOCKWX_ADMIN_TOKEN"), "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitPassed
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wxload up: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	if err := checkRedisFlag(opts.RedisURL); err != nil {
		fmt.Fprintln(stderr, "wxload up: --redis:", err)
		return ExitUsage
	}
	var err error
	if len(services) > 0 || dep.MockURL != "" {
		dep.Services, dep.APIKey = services, opts.APIKey
		err = loadtest.Describe(ctx, dep, stdout)
	} else {
		err = loadtest.Up(ctx, opts, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "wxload up:", err)
		if errors.Is(err, loadtest.ErrUsage) {
			return ExitUsage
		}
		return ExitFailed
	}
	return ExitPassed
}
