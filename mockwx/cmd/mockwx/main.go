// Command mockwx serves a mock of the WeChat Official Account API with a
// built-in demo app, for testing WeChat clients offline. See package mockwx.
//
//	go run ./mockwx/cmd/mockwx            # :9000, demo app printed at start
//	mockwx -addr 127.0.0.1:9000 -seed 42 -config mock.yaml
//
// Flags default to the MOCKWX_* environment variables (mockwx -h lists
// them and the variables that adjust the demo app). The admin API under
// /_mock/ is a test tool: never expose it; MOCKWX_ADMIN_TOKEN guards it.
// `mockwx -healthcheck [URL]` probes a running mock instead (default
// http://127.0.0.1:9000/_mock/apps): the healthcheck of the FROM-scratch
// image. `mockwx -version` prints the version. Logs are JSON lines on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wxpush/wxpush/internal/healthcheck"
	"github.com/wxpush/wxpush/internal/logging"
	"github.com/wxpush/wxpush/internal/version"
	"github.com/wxpush/wxpush/mockwx"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "mockwx:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// defaultHealthcheckURL is what `mockwx -healthcheck` probes without a URL.
const defaultHealthcheckURL = "http://127.0.0.1:9000/_mock/apps"

// settings are what the flags parse into.
type settings struct {
	addr, configPath, seed, adminToken, logLevel string
	caCert, caKey                                string
}

// newFlagSet defines mockwx's flags, each defaulting to the variable it
// names as getenv has it; printUsage passes no variables, so -h shows the
// built-in defaults and never the admin token from the environment.
func newFlagSet(getenv func(string) string) (*flag.FlagSet, *settings) {
	fs := flag.NewFlagSet("mockwx", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports errors, printUsage the help
	fs.Usage = func() {}
	envOr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var s settings
	fs.StringVar(&s.addr, "addr", envOr(mockwx.EnvAddr, ":9000"), "listen address (env "+mockwx.EnvAddr+")")
	fs.StringVar(&s.configPath, "config", envOr(mockwx.EnvConfig, ""), "YAML config: settings, apps, templates, followers, rules (env "+mockwx.EnvConfig+")")
	fs.StringVar(&s.seed, "seed", envOr(mockwx.EnvSeed, ""), "seed for every random choice; empty: time-based, printed (env "+mockwx.EnvSeed+")")
	fs.StringVar(&s.adminToken, "admin-token", envOr(mockwx.EnvAdminToken, ""), "bearer token guarding /_mock/; empty: unguarded (env "+mockwx.EnvAdminToken+")")
	fs.StringVar(&s.logLevel, "log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&s.caCert, "ca-cert", envOr(mockwx.EnvCACert, ""), "the HTTPS proxy mode's CA certificate, PEM (env "+mockwx.EnvCACert+"); generated with -ca-key\non first start when neither exists; empty: "+defaultCADescription)
	fs.StringVar(&s.caKey, "ca-key", envOr(mockwx.EnvCAKey, ""), "the CA's private key, PEM, written owner-only (env "+mockwx.EnvCAKey+"); empty: ca-key.pem beside\nthe default certificate")
	return fs, &s
}

// printUsage writes mockwx's help: how to run it, every flag with the
// variable it defaults to and its built-in default, and the variables
// that adjust the demo app.
func printUsage(w io.Writer) {
	fs, _ := newFlagSet(func(string) string { return "" })
	fmt.Fprintf(w, usageHead, version.Version, defaultHealthcheckURL)
	fs.SetOutput(w)
	fs.PrintDefaults()
	demo := mockwx.DemoApp() // the mock's own test values, shown on purpose as in the banner
	fmt.Fprintf(w, usageTail, mockwx.EnvAppID, demo.AppID, mockwx.EnvAppSecret, demo.Secret, mockwx.EnvCallbackURL,
		mockwx.EnvCallbackToken, demo.CallbackToken, mockwx.EnvEncodingAESKey, demo.EncodingAESKey, mockwx.EnvCallbackMode, demo.CallbackMode)
}

const usageHead = `mockwx %s: a mock of the WeChat Official Account API, for testing WeChat clients offline.
A test tool: never expose it (the admin API under /_mock/ changes its behaviour).

usage:
  mockwx [flags]              serve; every flag defaults to the environment variable it names
  mockwx -healthcheck [URL]   probe a running mock instead of serving (default %s):
                              exit 0 on a 2xx answer, 1 otherwise (the container healthcheck)
  mockwx -version             print the version and exit
  mockwx -h, --help           print this help and exit

flags:
`

const usageTail = `
The demo app (served unless the config sets no_demo_app) is adjusted by:
  %-24s its appid (default %s)
  %-24s its appsecret (default %s)
  %-24s where TEMPLATESENDJOBFINISH reports and simulated user events are pushed (default: none)
  %-24s the callback token (default %s)
  %-24s the EncodingAESKey, 43 characters (default %s)
  %-24s plain, compat or safe (default %s)

HTTPS proxy mode: the listener also answers CONNECT for WeChat's API hosts
(api.weixin.qq.com, api2., sh.api., sz.api., hk.api.), terminating TLS with a
certificate from the mock's CA and serving the same API; any other host is
refused. A client needs only HTTPS_PROXY=http://<addr> and to trust the CA
(the file above, or GET /_mock/ca.pem). The default CA location is read from:
  XDG_CONFIG_HOME          $XDG_CONFIG_HOME/mockwx/ca.pem and ca-key.pem, else
  HOME                     $HOME/.config/mockwx/; with neither (or unwritable),
                           a CA is generated for this run only.

The banner printed at start shows the demo app's credentials and templates.
Logs are JSON lines on stderr at -log-level; durations read as "1.5s".
`

// run is the whole program; ready, when set, is told the listening address.
// -h and --help print the help to stdout and return nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(addr string)) error {
	if url, ok := healthcheck.FromArgs(args, defaultHealthcheckURL); ok {
		// The FROM-scratch image's healthcheck: probe, do not serve.
		if err := healthcheck.Probe(ctx, url); err != nil {
			return fmt.Errorf("-healthcheck: %w", err)
		}
		return nil
	}
	if version.Requested(args) {
		fmt.Fprintln(stdout, "mockwx", version.Version)
		return nil
	}
	fs, set := newFlagSet(getenv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return nil
		}
		return fmt.Errorf("%w: %v (mockwx -h lists every setting)", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (mockwx -h lists every setting)", errUsage, fs.Args())
	}
	level, err := logging.ParseLevel(set.logLevel)
	if err != nil {
		return fmt.Errorf("%w: -log-level: %v", errUsage, err)
	}
	log := logging.New(stderr, level)

	seed := time.Now().UnixNano()
	if set.seed != "" {
		n, err := strconv.ParseInt(set.seed, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: -seed %q: want an integer", errUsage, set.seed)
		}
		seed = n
	}
	var cfg mockwx.Config
	if set.configPath != "" {
		var err error
		if cfg, err = mockwx.LoadConfig(set.configPath); err != nil {
			return err
		}
	}
	cfg = mockwx.ApplyEnv(cfg, getenv)
	ca, caPath, err := loadCA(set, getenv, log)
	if err != nil {
		return err
	}
	srv, err := mockwx.New(cfg, mockwx.Options{Seed: seed, AdminToken: set.adminToken, Logger: log, CA: ca})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", set.addr)
	if err != nil {
		return err
	}
	printBanner(stdout, ln.Addr().String(), seed, set.adminToken != "", caPath, srv.Apps())
	log.Info("mockwx listening", "addr", ln.Addr().String(), "seed", seed, "version", version.Version)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("mockwx shutting down")
	srv.Close() // release hung connections first
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// printBanner shows what a developer needs to point a client at the mock.
// The credentials are the mock's own test values, shown on purpose.
func printBanner(w io.Writer, addr string, seed int64, guarded bool, caPath string, apps []mockwx.App) {
	host := addr
	if strings.HasPrefix(host, "[::]:") || strings.HasPrefix(host, "0.0.0.0:") {
		host = "127.0.0.1:" + host[strings.LastIndex(host, ":")+1:]
	}
	fmt.Fprintf(w, "mockwx %s — a mock WeChat API. Test tool: never expose it.\n", version.Version)
	fmt.Fprintf(w, "  WeChat API base URL: http://%s   admin API: http://%s/_mock/ (guarded: %v)\n", host, host, guarded)
	fmt.Fprintf(w, "  seed: %d (rerun with -seed %d to replay)\n", seed, seed)
	if caPath == "" {
		caPath = "(this run only)"
	}
	fmt.Fprintf(w, "  HTTPS proxy for https://api.weixin.qq.com & co: HTTPS_PROXY=http://%s, trust CA %s (or GET http://%s%s)\n", host, caPath, host, mockwx.PathCAPEM)
	for _, a := range apps {
		fmt.Fprintf(w, "  app %s  secret %s  original id %s\n", a.AppID, a.Secret, a.OriginalID)
		cb := a.CallbackURL
		if cb == "" {
			cb = "(none: set MOCKWX_CALLBACK_URL to receive TEMPLATESENDJOBFINISH)"
		}
		fmt.Fprintf(w, "    callback %s  mode %s  token %s  EncodingAESKey %s\n", cb, a.CallbackMode, a.CallbackToken, a.EncodingAESKey)
		for _, t := range a.Templates {
			var fields []string
			for _, f := range t.Fields {
				fields = append(fields, f.Key+":"+string(f.Type))
			}
			fmt.Fprintf(w, "    template %-22s %s\n", t.ID, strings.Join(fields, " "))
		}
		if len(a.Followers.NotFollowing)+len(a.Followers.Blocked) > 0 {
			fmt.Fprintf(w, "    not following (43004): %s  blocked (failed:user block): %s\n",
				strings.Join(a.Followers.NotFollowing, ","), strings.Join(a.Followers.Blocked, ","))
		}
	}
}

// defaultCADescription is how -h describes the default CA location.
const defaultCADescription = "$XDG_CONFIG_HOME/mockwx/ca.pem or $HOME/.config/mockwx/ca.pem"

// loadCA returns the proxy mode's CA and the file its certificate is in:
// -ca-cert/-ca-key (loaded, or generated there on first start; any failure
// is an error), else the user's config directory, else (no such directory,
// or it cannot be written, as in a read-only container) a CA for this run
// only, with a warning: clients then fetch it from /_mock/ca.pem.
func loadCA(set *settings, getenv func(string) string, log *slog.Logger) (*mockwx.CA, string, error) {
	now := time.Now()
	if set.caCert != "" || set.caKey != "" {
		if set.caCert == "" || set.caKey == "" {
			return nil, "", fmt.Errorf("%w: -ca-cert and -ca-key go together", errUsage)
		}
		ca, created, err := mockwx.LoadOrCreateCA(set.caCert, set.caKey, now)
		if err != nil {
			return nil, "", fmt.Errorf("proxy CA: %w", err)
		}
		logCA(log, set.caCert, created)
		return ca, set.caCert, nil
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" && getenv("HOME") != "" {
		dir = filepath.Join(getenv("HOME"), ".config")
	}
	if dir != "" {
		cert, key := filepath.Join(dir, "mockwx", "ca.pem"), filepath.Join(dir, "mockwx", "ca-key.pem")
		ca, created, err := mockwx.LoadOrCreateCA(cert, key, now)
		if err == nil {
			logCA(log, cert, created)
			return ca, cert, nil
		}
		log.Warn("proxy CA: cannot keep one in the config directory; using one for this run only (GET /_mock/ca.pem)", "dir", filepath.Dir(cert), "err", err)
	}
	ca, err := mockwx.NewCA(now)
	if err != nil {
		return nil, "", fmt.Errorf("proxy CA: %w", err)
	}
	return ca, "", nil
}

func logCA(log *slog.Logger, cert string, created bool) {
	if created {
		log.Info("proxy CA generated", "cert", cert)
	} else {
		log.Info("proxy CA loaded", "cert", cert)
	}
}
