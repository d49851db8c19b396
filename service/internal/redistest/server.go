package redistest

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Server is a Redis server a test can stop and start again on the same
// address, to simulate an outage and a restart that comes back empty.
type Server interface {
	URL() string
	Stop()
	// StartEmpty starts the server again on the same address, with no data
	// (a restart without persistence).
	StartEmpty(t testing.TB)
}

// Servers returns the kinds of restartable server available: an in-process
// miniredis always, and a real redis-server process when the binary is on
// PATH (CI installs it).
func Servers(t testing.TB) map[string]func(testing.TB) Server {
	kinds := map[string]func(testing.TB) Server{"miniredis": newMini}
	if _, err := exec.LookPath("redis-server"); err == nil {
		kinds["redis-server"] = newProcess
	}
	return kinds
}

type mini struct {
	m    *miniredis.Miniredis
	addr string
}

func newMini(t testing.TB) Server {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &mini{m: m, addr: m.Addr()}
	t.Cleanup(func() { s.m.Close() })
	return s
}

func (s *mini) URL() string { return "redis://" + s.addr + "/0" }
func (s *mini) Stop()       { s.m.Close() }

// StartEmpty starts a fresh miniredis on the old address. (miniredis's own
// Restart keeps the data and, in v2.40, leaves blocking commands without
// their timeout, so a new server is the faithful model of a restart.)
func (s *mini) StartEmpty(t testing.TB) {
	m := miniredis.NewMiniRedis()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := m.StartAddr(s.addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: restart on %s: %v", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.m = m
}

type process struct {
	port int
	args []string // appended to the command line
	cmd  *exec.Cmd
}

func newProcess(t testing.TB) Server { return NewProcess(t) }

// NewProcess starts a redis-server process on a free port, without
// persistence unless args (appended to its command line, e.g.
// "--appendonly", "yes") say otherwise, and stops it at the end of the
// test. It skips the test when redis-server is not on PATH.
func NewProcess(t testing.TB, args ...string) Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redistest: redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	p := &process{port: port, args: args}
	p.StartEmpty(t)
	t.Cleanup(p.Stop)
	return p
}

func (p *process) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(p.port) + "/0" }

func (p *process) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// StartEmpty starts redis-server without persistence on the port and waits
// until it accepts connections.
func (p *process) StartEmpty(t testing.TB) {
	args := append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, p.args...)
	p.cmd = exec.Command("redis-server", args...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server did not start on %d", p.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
