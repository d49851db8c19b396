package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/wxpush/wxpush/internal/rediscluster"
)

// The values of Spec.Redis that choose a Redis the deployment owns rather
// than naming one.
const (
	RedisAuto    = ""             // a private redis-server if installed, else miniredis
	RedisMini    = "miniredis"    // always the in-process miniredis
	RedisProcess = "redis-server" // always a private redis-server process
	// RedisCluster is a private Redis Cluster of 3 masters with one
	// replica each (package internal/rediscluster: redis-server processes
	// with append-only files), which the instances reach by a
	// cluster+redis:// URL. Its client dials every node that CLUSTER
	// SLOTS names, so no gate can stand in front of it: Spec.Gates must
	// be false, CutRedis is unsupported, and StopRedis stops every node
	// (StartRedis brings them back with their data).
	RedisCluster = "cluster"
)

// RedisServer is a private redis-server process: loopback only, with an
// append-only file in its directory, so a restart comes back with its data
// as a production Redis with persistence does.
type RedisServer struct {
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedisServer starts redis-server on a free loopback port with its
// files (append-only file, redis.log) in dir, and waits until it answers.
func StartRedisServer(ctx context.Context, dir string) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not installed (apt-get install redis-server), or use miniredis")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// redis-server changes to --dir before it opens its log: a relative
	// dir (wxload's default run directory is one) would be looked up
	// from there.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &RedisServer{bin: bin, dir: dir, port: port}
	return p, p.Start(ctx)
}

// URL is the server's redis:// URL.
func (p *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", p.port) }

// Addr is the server's host:port.
func (p *RedisServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// Start starts the (stopped) server again on its port with its data, and
// waits until it answers PING with its data loaded (10 s at most).
func (p *RedisServer) Start(ctx context.Context) error {
	p.cmd = exec.Command(p.bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(p.port), "--dir", p.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--protected-mode", "yes", "--logfile", filepath.Join(p.dir, "redis.log"))
	// Its own process group: a Ctrl-C meant for the parent does not stop
	// it before the parent's teardown does.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(p.cmd.SysProcAttr)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if rediscluster.Ping(ctx, p.Addr()) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start (see %s)", filepath.Join(p.dir, "redis.log"))
		case <-ctx.Done():
			p.Stop()
			return ctx.Err()
		case <-deadline.C:
			p.Stop()
			return errors.New("redis-server did not answer within 10 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the server gracefully (SIGTERM: it flushes its append-only
// file), killing it if it takes more than 10 s. Stopping a stopped server
// does nothing.
func (p *RedisServer) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
