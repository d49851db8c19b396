package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The values of Options.RedisURL that choose an embedded Redis rather than
// naming one.
const (
	RedisAuto    = ""             // a private redis-server if installed, else miniredis
	RedisMini    = "miniredis"    // always the in-process miniredis
	RedisProcess = "redis-server" // always a private redis-server process
)

// redisProc is a private redis-server process: loopback only, append-only
// file in a temporary directory, so a restart comes back with its data as
// a production Redis with persistence does.
type redisProc struct {
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedisProc(ctx context.Context, dir string) (*redisProc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not installed (apt-get install redis-server), or use --redis miniredis")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &redisProc{bin: bin, dir: dir, port: port}
	return p, p.start(ctx)
}

func (p *redisProc) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", p.port) }

func (p *redisProc) start(ctx context.Context) error {
	p.cmd = exec.Command(p.bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(p.port), "--dir", p.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--protected-mode", "yes", "--logfile", filepath.Join(p.dir, "redis.log"))
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pingRedis(p.port) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited at start (see %s)", filepath.Join(p.dir, "redis.log"))
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return errors.New("redis-server did not answer within 10 s")
		}
	}
}

// stop ends the server gracefully (SIGTERM: it flushes its append-only
// file), killing it if it takes more than 10 s.
func (p *redisProc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *redisProc) restart(ctx context.Context, down time.Duration) error {
	p.stop()
	sleepCtx(ctx, down)
	return p.start(ctx)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pingRedis reports whether a Redis answers PING on the port (and has
// loaded its data: a loading server answers -LOADING).
func pingRedis(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
