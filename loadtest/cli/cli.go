// Package cli is the wxload command line: run, demo, up, list, validate,
// schema, report, compare, index and merge. cmd/wxload is a thin main around
// Main, so tests drive the command in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wxpush/wxpush/internal/rediscluster"
	"github.com/wxpush/wxpush/internal/redisurl"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/loadtest"
	"github.com/wxpush/wxpush/reports"
	"github.com/wxpush/wxpush/scenarios"
)

// Exit statuses.
const (
	ExitPassed = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Render writes a run directory's index.html: the HTML report of package
// reports. nil leaves the plain text report loadtest writes.
var Render = reports.Render

const usage = `wxload runs declarative load scenarios against wxpushd (with mockwx behind it),
accounts for every message end to end, and writes a run directory with
summary.json and index.html.

usage:
  wxload run SCENARIO [flags]   run a catalog scenario (by name) or a scenario file
  wxload demo                   run the smoke scenario on the embedded stack
  wxload up [flags]             start the embedded stack and keep it running until Ctrl-C,
                                printing its URLs, API key, apps and a first message to send
  wxload list                   list the catalog
  wxload validate FILE...       check scenario files
  wxload schema                 print the scenario JSON Schema (for editors)
  wxload report RUNDIR          render RUNDIR/index.html again and print the summary
  wxload compare BASE NEW       compare run NEW with run BASE; exit 1 if NEW regressed
  wxload index [DIR]            list the runs in DIR (default runs) as an HTML page
  wxload merge DIR... [flags]   combine the run directories of a sharded run's shards
                                (run --shard) into one summary, verdict and report
  wxload help                   this help (also -h or --help, after any command too)
  wxload version                print the version (also --version)

run flags:
  --out DIR          run directory (default runs/NAME-TIMESTAMP)
  --service URL      a running wxpushd (repeat or comma-separate for several); remote mode
  --mock URL         the mock behind it (remote mode)
  --mock-token T     the mock's admin token (default $MOCKWX_ADMIN_TOKEN)
  --api-key K        the service's API key (default $WXLOAD_API_KEY)
  --redis URL        embedded stack: use this Redis (redis://host:6379/0) instead of an embedded
                     one; miniredis or redis-server chooses the embedded one (default: a private
                     redis-server when installed, else miniredis); cluster runs a private Redis
                     Cluster of 3 masters + 3 replicas (redis-server processes), as a scenario's
                     stack.redis: cluster does (which refuses any other --redis)
  --stack KIND       embedded (default: in this process) or containers (Docker:
                     images built FROM scratch from the source, nothing pulled;
                     the timeline's kills and Redis restarts go through Docker)
  --seed N           override the scenario's seed
  --quiet            no progress, only the final verdict line
  --no-self-check    skip the generator self-check
  --status-limit N   read at most N message statuses after the drain (default 50000)
  --shard I/N        remote mode: run shard I (from 0) of N: requests I, I+N, I+2N... of
                     the scenario's load, on its schedule (each shard offers 1/N of the
                     rate; the shards' requests sum to the scenario's exactly), with its
                     own markers; shard 0 alone runs the timeline and the users. The
                     directory adds messages.jsonl and shard.json for wxload merge. A
                     shard exits 0 once its directory is written: its expectations read
                     its share only, and the run's verdict is wxload merge's
  --run-id ID        with --shard: the run's id, the same for every shard and new for
                     each run (a Kubernetes Job's uid; markers and idempotency keys
                     derive from it, so shards started apart agree)

up flags:
  --instances N        wxpushd instances (default 1)
  --addr HOST:PORT     the first instance (default 127.0.0.1:8080; the next ones on the
                       next ports; port 0: free ports)
  --mock-addr HOST:PORT  mockwx (default 127.0.0.1:9000)
  --redis URL          use this Redis instead of an embedded one (or miniredis, redis-server,
                       cluster: as run --redis)
  --api-key K          the service's API key (default local-dev-key-0123456789abcdef)
  --logs DIR           keep the logs and Redis data in DIR (default: a temporary
                       directory removed at exit)
  --service URL        start nothing: print the same for this running deployment
                       (repeat or comma-separate; make up does, for the compose stack)
  --mock URL           with --service: the deployment's mock
  --mock-token T       with --service: the mock's admin token (default $MOCKWX_ADMIN_TOKEN)

compare flags:
  --out FILE         the comparison page (default NEW/compare-vs-BASE.html, or
                     compare-vs-BASE-2.html... : an earlier one is never overwritten)
  --throughput P     largest allowed throughput drop (default -10%)
  --p99 P            largest allowed rise of the accept latency p99 (default +20%)
  --force            compare runs of different scenarios (refused otherwise, exit 2)
  NEW regresses when it falls outside either tolerance or lost or duplicated
  any message.

index flags:
  --out FILE         the page (default reports/out/index.html)

merge flags:
  --out DIR          the merged run directory (default runs/NAME-merged-TIMESTAMP)
  --mock URL         account for every shard's messages against this mock's ledger (else
                     against the ledger.jsonl extracts the shards wrote)
  --mock-token T     the mock's admin token (default $MOCKWX_ADMIN_TOKEN)
  --quiet            only the final verdict line
  The directories must be the N shards of one run (same --run-id, scenario and N, each
  index once); merge names what is missing or given twice (exit 2).

environment:
  WXLOAD_API_KEY      default of run --api-key
  MOCKWX_ADMIN_TOKEN  default of run --mock-token and up --mock-token
  WXPUSH_REDIS_CLUSTER_PORTS  run and up on a Redis Cluster (--redis cluster, stack.redis:
                      cluster): LO-HI, the loopback port range of its nodes (bus ports
                      +10000), for a machine shared with other Redis users (default: free ports)
  XDG_CACHE_HOME      where run keeps this machine's self-check rates, to tell a busy
                      machine from a slow service: $XDG_CACHE_HOME/wxload/self-check.json
  HOME                ... or $HOME/.cache/wxload/self-check.json without XDG_CACHE_HOME
  run --stack containers (testcontainers-go) also reads:
  WXPUSH_REDIS_IMAGE  the Redis image (default redis:7-alpine when present, else
                      wxpush/redis:local, built from Debian's redis-server)
  DOCKER_HOST         the Docker engine (default the local socket)
  TESTCONTAINERS_HOST_OVERRIDE  the host that reaches the containers' ports (default
                      127.0.0.1 with a local engine)
  TESTCONTAINERS_RYUK_DISABLED  set to true when unset (nothing is pulled; wxload removes
                      its own containers, labelled wxpush.wxload=true)
  go-redis's own log lines (the embedded stack's Redis clients) come on stderr as JSON,
  at most 5 a minute.

exit status: 0 expectations held, 1 an expectation failed, 2 bad usage or config.
compare: 0 no regression, 1 regressed, 2 bad usage.
run --shard: 0 the shard ran and wrote its directory, 1 it could not, 2 bad usage.
merge: 0 the merged run's expectations held, 1 one failed, 2 bad usage (not the shards of one run).
up: 0 stopped by Ctrl-C (SIGINT or SIGTERM), 1 could not start (an address in use...), 2 bad usage.
`

// Main runs the command and returns its exit status.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	if helpAsked(args[1:]) {
		fmt.Fprint(stdout, usage)
		return ExitPassed
	}
	switch args[0] {
	case "run":
		return run(ctx, args[1:], getenv, stdout, stderr, "")
	case "demo":
		if len(args) > 1 {
			fmt.Fprintln(stderr, "wxload demo takes no arguments")
			return ExitUsage
		}
		return run(ctx, []string{"smoke"}, getenv, stdout, stderr, "demo")
	case "up":
		return up(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		return list(stdout, stderr)
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "schema":
		b, err := scenarios.Schema()
		if err != nil {
			fmt.Fprintln(stderr, "wxload:", err)
			return ExitFailed
		}
		fmt.Fprintln(stdout, string(b))
		return ExitPassed
	case "report":
		return report(args[1:], stdout, stderr)
	case "compare":
		return compare(args[1:], stdout, stderr)
	case "index":
		return index(args[1:], stdout, stderr)
	case "merge":
		return merge(ctx, args[1:], getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return ExitPassed
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, "wxload", version.Version)
		return ExitPassed
	default:
		fmt.Fprintf(stderr, "wxload: unknown command %q\n\n%s", args[0], usage)
		return ExitUsage
	}
}

type multi []string

func (m *multi) String() string { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*m = append(*m, strings.TrimRight(s, "/"))
		}
	}
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, demo string) int {
	fs := flag.NewFlagSet("wxload run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var (
		opts     loadtest.Options
		services multi
		seed     int64
		quiet    bool
		shard    string
	)
	fs.StringVar(&opts.OutDir, "out", "", "")
	fs.Var(&services, "service", "")
	fs.StringVar(&opts.MockURL, "mock", "", "")
	fs.StringVar(&opts.MockToken, "mock-token", getenv("MOCKWX_ADMIN_TOKEN"), "")
	fs.StringVar(&opts.APIKey, "api-key", getenv("WXLOAD_API_KEY"), "")
	fs.StringVar(&opts.RedisURL, "redis", "", "")
	fs.StringVar(&opts.Stack, "stack", "", "")
	fs.Int64Var(&seed, "seed", 0, "")
	fs.BoolVar(&quiet, "quiet", false, "")
	fs.BoolVar(&opts.NoSelfCheck, "no-self-check", false, "")
	fs.IntVar(&opts.StatusCheckLimit, "status-limit", 0, "")
	fs.StringVar(&shard, "shard", "", "")
	fs.StringVar(&opts.Shard.RunID, "run-id", "", "")
	opts.ClusterPorts = getenv(rediscluster.PortsVar)
	// Flags may follow the scenario.
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return ExitUsage
	}
	if err := checkRedisFlag(opts.RedisURL); err != nil {
		fmt.Fprintln(stderr, "wxload run --redis:", err)
		return ExitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "wxload run: name one scenario (a catalog name, see wxload list, or a file)")
		return ExitUsage
	}
	if shard != "" {
		sh, err := loadtest.ParseShard(shard)
		if err != nil {
			fmt.Fprintln(stderr, "wxload run:", strings.TrimPrefix(err.Error(), loadtest.ErrUsage.Error()+": "))
			return ExitUsage
		}
		sh.RunID = opts.Shard.RunID
		opts.Shard = sh
		if len(services) == 0 {
			fmt.Fprintln(stderr, "wxload run: --shard runs a share of the load against a running deployment: give --service URL --mock URL --api-key K (the embedded stack belongs to one process)")
			return ExitUsage
		}
		if err := loadtest.CheckRunID(opts.Shard.RunID); err != nil {
			fmt.Fprintln(stderr, "wxload run:", strings.TrimPrefix(err.Error(), loadtest.ErrUsage.Error()+": "))
			return ExitUsage
		}
	} else if opts.Shard.RunID != "" {
		fmt.Fprintln(stderr, "wxload run: --run-id names a sharded run: it goes with --shard I/N")
		return ExitUsage
	}
	sc, err := loadScenario(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "wxload:", err)
		return ExitUsage
	}
	if seed != 0 {
		sc.Seed = seed
	}
	if len(services) > 0 {
		opts.Services = services
		if opts.APIKey == "" {
			fmt.Fprintln(stderr, "wxload: --service needs --api-key (or WXLOAD_API_KEY)")
			return ExitUsage
		}
	}
	if opts.OutDir == "" && demo != "" {
		opts.OutDir = filepath.Join("runs", "demo-"+time.Now().Format("20060102-150405"))
	}
	if !quiet {
		opts.Progress = stderr
		opts.Interactive = isTerminal(stderr)
	}
	opts.Render = Render
	opts.SelfCheckHistory = selfCheckHistory(getenv)
	res, err := loadtest.Run(ctx, sc, opts)
	if err != nil {
		fmt.Fprintln(stderr, "wxload:", err)
		if errors.Is(err, loadtest.ErrUsage) {
			return ExitUsage
		}
		return ExitFailed
	}
	s := res.Summary
	verdict, report := finish(stdout, quiet, s, res.Dir)
	if opts.Shard.Count > 0 {
		fmt.Fprintf(stdout, "\n%s shard %s of run %s done (its share: %s): accepted %d, delivered %d, failed %d, lost %d, duplicates %d; report: %s\nthe run's verdict: wxload merge DIR... with the %d shards' directories\n",
			s.Scenario, opts.Shard, opts.Shard.RunID, verdict, s.Delivery.Accepted, s.Delivery.Delivered, s.Delivery.Failed, s.Delivery.Lost, s.Delivery.Duplicates, report, opts.Shard.Count)
		return ExitPassed
	}
	fmt.Fprintf(stdout, "\n%s %s: accepted %d, delivered %d, failed %d, lost %d, duplicates %d; report: %s\n",
		s.Scenario, verdict, s.Delivery.Accepted, s.Delivery.Delivered, s.Delivery.Failed, s.Delivery.Lost, s.Delivery.Duplicates, report)
	if !s.Passed {
		return ExitFailed
	}
	return ExitPassed
}

// finish prints a finished run's text report (unless quiet) and returns
// its verdict and the absolute path of its HTML report.
func finish(stdout io.Writer, quiet bool, s *loadtest.Summary, dir string) (verdict, report string) {
	if !quiet {
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, loadtest.TextReport(s))
	}
	verdict = "PASSED"
	if !s.Passed {
		verdict = "FAILED"
	}
	report, _ = filepath.Abs(filepath.Join(dir, loadtest.ReportFile))
	return verdict, report
}

func merge(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxload merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var (
		opts  loadtest.MergeOptions
		quiet bool
	)
	fs.StringVar(&opts.OutDir, "out", "", "")
	fs.StringVar(&opts.MockURL, "mock", "", "")
	fs.StringVar(&opts.MockToken, "mock-token", getenv("MOCKWX_ADMIN_TOKEN"), "")
	fs.BoolVar(&quiet, "quiet", false, "")
	dirs, err := parseInterleaved(fs, args)
	if err != nil {
		return ExitUsage
	}
	if len(dirs) == 0 {
		fmt.Fprintln(stderr, "wxload merge: name the run directories of the shards (wxload run --shard I/N --out DIR)")
		return ExitUsage
	}
	opts.MockURL = strings.TrimRight(opts.MockURL, "/")
	if !quiet {
		opts.Progress = stderr
	}
	opts.Render = Render
	res, err := loadtest.Merge(ctx, dirs, opts)
	if err != nil {
		if errors.Is(err, loadtest.ErrUsage) {
			fmt.Fprintln(stderr, "wxload merge:", strings.TrimPrefix(err.Error(), loadtest.ErrUsage.Error()+": "))
			return ExitUsage
		}
		fmt.Fprintln(stderr, "wxload merge:", err)
		return ExitFailed
	}
	s := res.Summary
	verdict, report := finish(stdout, quiet, s, res.Dir)
	fmt.Fprintf(stdout, "\n%s %s (merged from %d shards): accepted %d, delivered %d, failed %d, lost %d, duplicates %d; report: %s\n",
		s.Scenario, verdict, s.Run.Shard.Count, s.Delivery.Accepted, s.Delivery.Delivered, s.Delivery.Failed, s.Delivery.Lost, s.Delivery.Duplicates, report)
	if !s.Passed {
		return ExitFailed
	}
	return ExitPassed
}

// helpAsked reports whether a command's arguments ask for the help: -h,
// -help or --help before a "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// checkRedisFlag checks run's --redis: empty, the name of an embedded
// Redis, or a Redis URL with its scheme.
func checkRedisFlag(v string) error {
	switch v {
	case loadtest.RedisAuto, loadtest.RedisMini, loadtest.RedisProcess, loadtest.RedisCluster:
		return nil
	}
	if err := redisurl.Check(v); err != nil {
		return fmt.Errorf("%w (or %s, %s or %s)", err, loadtest.RedisMini, loadtest.RedisProcess, loadtest.RedisCluster)
	}
	return nil
}

// loadScenario reads a file when the argument names one, else the catalog
// (whose error for an unknown name suggests the nearest one).
func loadScenario(arg string) (scenarios.Scenario, error) {
	if strings.ContainsAny(arg, "/\\") || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		return scenarios.ReadFile(arg)
	}
	if _, err := os.Stat(arg); err == nil {
		return scenarios.ReadFile(arg)
	}
	return scenarios.Get(arg)
}

func list(stdout, stderr io.Writer) int {
	all, err := scenarios.Catalog()
	if err != nil {
		fmt.Fprintln(stderr, "wxload:", err)
		return ExitFailed
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tINSTANCES\tLOAD\tDESCRIPTION")
	for _, sc := range all {
		desc := sc.Description
		if i := strings.IndexAny(desc, ".:"); i > 0 && i < 90 {
			desc = desc[:i]
		} else if len([]rune(desc)) > 90 {
			desc = string([]rune(desc)[:87]) + "..."
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f req over %s\t%s\n", sc.Name, sc.Stack.Instances, sc.Load.TotalHits(), sc.Load.Duration, desc)
	}
	_ = tw.Flush()
	return ExitPassed
}

func validate(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "wxload validate: name one or more scenario files")
		return ExitUsage
	}
	code := ExitPassed
	for _, f := range files {
		sc, err := scenarios.ReadFile(f)
		if err == nil {
			err = loadtest.CheckExpectations(sc.Expect)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: invalid\n%v\n", f, err)
			code = ExitUsage
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s, %.0f requests over %s, %d expectations)\n", f, sc.Name, sc.Load.TotalHits(), sc.Load.Duration, len(sc.Expect))
	}
	return code
}

func report(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "wxload report: name one run directory")
		return ExitUsage
	}
	dir := args[0]
	s, err := loadtest.ReadSummary(dir)
	if err != nil {
		fmt.Fprintln(stderr, "wxload:", err)
		return ExitUsage
	}
	if Render != nil {
		err = Render(dir)
	} else {
		err = loadtest.WritePlainReport(dir, s)
	}
	if err != nil {
		fmt.Fprintln(stderr, "wxload:", err)
		return ExitFailed
	}
	fmt.Fprint(stdout, loadtest.TextReport(s))
	p, _ := filepath.Abs(filepath.Join(dir, loadtest.ReportFile))
	fmt.Fprintf(stdout, "\nreport: %s\n", p)
	if !s.Passed {
		return ExitFailed
	}
	return ExitPassed
}

// parseInterleaved parses flags that may come before, between or after
// the positional arguments, and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// percentFlag is a tolerance flag such as -10% or +20%.
type percentFlag struct{ v *float64 }

func (p percentFlag) String() string {
	if p.v == nil {
		return ""
	}
	return fmt.Sprintf("%g%%", *p.v*100)
}

func (p percentFlag) Set(s string) error {
	f, err := reports.ParsePercent(s)
	if err != nil {
		return err
	}
	*p.v = f
	return nil
}

func compare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxload compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	tol := reports.DefaultTolerances()
	var out string
	var force bool
	fs.StringVar(&out, "out", "", "")
	fs.BoolVar(&force, "force", false, "")
	fs.Var(percentFlag{&tol.Throughput}, "throughput", "")
	fs.Var(percentFlag{&tol.P99}, "p99", "")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return ExitUsage
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "wxload compare: name two run directories, BASE and NEW")
		return ExitUsage
	}
	c, err := reports.NewComparison(pos[0], pos[1], tol)
	if err != nil {
		fmt.Fprintln(stderr, "wxload compare:", err)
		return ExitUsage
	}
	if err := c.Comparable(); err != nil && !force {
		fmt.Fprintf(stderr, "wxload compare: %v: their figures do not measure the same thing, so no comparison was written (--force compares them anyway)\n", err)
		return ExitUsage
	}
	if out, err = c.Write(out); err != nil {
		fmt.Fprintln(stderr, "wxload compare:", err)
		return ExitFailed
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tBASE\tNEW\tRULE\tRESULT")
	for _, ch := range c.Checks {
		res := "ok"
		if ch.Regressed {
			res = "REGRESSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.Name, ch.Base, ch.New, ch.Rule, res)
	}
	_ = tw.Flush()
	p, _ := filepath.Abs(out)
	if c.Regressed() {
		fmt.Fprintf(stdout, "\n%s regressed against %s; report: %s\n", pos[1], pos[0], p)
		return ExitFailed
	}
	fmt.Fprintf(stdout, "\nno regression; report: %s\n", p)
	return ExitPassed
}

func index(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxload index", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	out := fs.String("out", reports.DefaultIndex, "")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return ExitUsage
	}
	dir := "runs"
	switch len(pos) {
	case 0:
	case 1:
		dir = pos[0]
	default:
		fmt.Fprintln(stderr, "wxload index: name at most one directory of runs")
		return ExitUsage
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "wxload index: %s is not a directory\n", dir)
		return ExitUsage
	}
	if err := reports.Index(dir, *out); err != nil {
		fmt.Fprintln(stderr, "wxload index:", err)
		return ExitFailed
	}
	p, _ := filepath.Abs(*out)
	fmt.Fprintf(stdout, "index of %s: %s\n", dir, p)
	return ExitPassed
}

// selfCheckHistory is the file that keeps this machine's self-check rates
// (see loadtest.Options): $XDG_CACHE_HOME/wxload/self-check.json, else
// $HOME/.cache/wxload/self-check.json; none without either.
func selfCheckHistory(getenv func(string) string) string {
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "wxload", "self-check.json")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "wxload", "self-check.json")
	}
	return ""
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
