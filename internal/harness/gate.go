package harness

import (
	"io"
	"net"
	"sync"
	"time"
)

// gate is a TCP proxy in front of Redis for one instance: open, it relays;
// closed, it drops every connection it holds and resets new ones, which is
// how an instance sees Redis stopping or the network to it being cut.
type gate struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newGate(upstream string) (*gate, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &gate{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	g.wg.Go(g.accept)
	return g, nil
}

func (g *gate) addr() string { return g.ln.Addr().String() }

func (g *gate) accept() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, as from a host that is gone
			}
			_ = c.Close()
			continue
		}
		g.conns[c] = struct{}{}
		g.wg.Add(1)
		g.mu.Unlock()
		go func() {
			defer g.wg.Done()
			g.relay(c)
		}()
	}
}

func (g *gate) relay(c net.Conn) {
	defer g.forget(c)
	up, err := net.DialTimeout("tcp", g.upstream, 2*time.Second)
	if err != nil {
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		_ = up.Close()
		return
	}
	g.conns[up] = struct{}{}
	g.mu.Unlock()
	defer g.forget(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
}

func (g *gate) forget(c net.Conn) {
	_ = c.Close()
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// setOpen opens or closes the gate; closing drops every connection.
func (g *gate) setOpen(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = !open
	if open {
		return
	}
	for c := range g.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// close stops the gate and waits for its goroutines.
func (g *gate) close() {
	_ = g.ln.Close()
	g.setOpen(false)
	g.wg.Wait()
}
