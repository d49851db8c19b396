// Command mockwx serves a mock of the WeChat Official Account API with a
// built-in demo app, for testing WeChat clients offline. See package mockwx.
//
//	go run ./mockwx/cmd/mockwx            # :9000, demo app printed at start
//	mockwx -addr 127.0.0.1:9000 -seed 42 -config mock.yaml
//
// Flags default to the MOCKWX_* environment variables. The admin API under
// /_mock/ is a test tool: never expose it; MOCKWX_ADMIN_TOKEN guards it.
// `mockwx -healthcheck [URL]` probes a running mock instead (default
// http://127.0.0.1:9000/_mock/apps): the healthcheck of the FROM-scratch image.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wxpush/wxpush/internal/healthcheck"
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

// run is the whole program; ready, when set, is told the listening address.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(addr string)) error {
	if url, ok := healthcheck.FromArgs(args, "http://127.0.0.1:9000/_mock/apps"); ok {
		// The FROM-scratch image's healthcheck: probe, do not serve.
		if err := healthcheck.Probe(ctx, url); err != nil {
			return fmt.Errorf("-healthcheck: %w", err)
		}
		return nil
	}
	fs := flag.NewFlagSet("mockwx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envOr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	addr := fs.String("addr", envOr(mockwx.EnvAddr, ":9000"), "listen address (env MOCKWX_ADDR)")
	configPath := fs.String("config", envOr(mockwx.EnvConfig, ""), "YAML config: apps, templates, followers, rules (env MOCKWX_CONFIG)")
	seedText := fs.String("seed", envOr(mockwx.EnvSeed, ""), "seed for every random choice; empty: time-based, printed (env MOCKWX_SEED)")
	adminToken := fs.String("admin-token", envOr(mockwx.EnvAdminToken, ""), "bearer token guarding /_mock/ (env MOCKWX_ADMIN_TOKEN)")
	logLevel := fs.String("log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: -log-level %q: %v", errUsage, *logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	seed := time.Now().UnixNano()
	if *seedText != "" {
		n, err := strconv.ParseInt(*seedText, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: -seed %q: want an integer", errUsage, *seedText)
		}
		seed = n
	}
	var cfg mockwx.Config
	if *configPath != "" {
		var err error
		if cfg, err = mockwx.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	cfg = mockwx.ApplyEnv(cfg, getenv)
	srv, err := mockwx.New(cfg, mockwx.Options{Seed: seed, AdminToken: *adminToken, Logger: log})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	printBanner(stdout, ln.Addr().String(), seed, *adminToken != "", srv.Apps())
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
func printBanner(w io.Writer, addr string, seed int64, guarded bool, apps []mockwx.App) {
	host := addr
	if strings.HasPrefix(host, "[::]:") || strings.HasPrefix(host, "0.0.0.0:") {
		host = "127.0.0.1:" + host[strings.LastIndex(host, ":")+1:]
	}
	fmt.Fprintf(w, "mockwx %s — a mock WeChat API. Test tool: never expose it.\n", version.Version)
	fmt.Fprintf(w, "  WeChat API base URL: http://%s   admin API: http://%s/_mock/ (guarded: %v)\n", host, host, guarded)
	fmt.Fprintf(w, "  seed: %d (rerun with -seed %d to replay)\n", seed, seed)
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
