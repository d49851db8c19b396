package wxpushd

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// connBound is a listener that serves at most a bound of connections at
// once, so that a flood of clients waits in the kernel's accept queue
// instead of using up file descriptors. Unlike netutil.LimitListener it
// does not let idle connections hold their slots: a keep-alive connection
// between two requests does nothing but costs a slot for the whole idle
// timeout, so anyone who opens connections, sends one cheap request on
// each (a probe needs no key) and stays silent could keep every other
// client out, WeChat's callbacks included. So when every slot is taken
// and another client is waiting, the connections that sit idle are closed,
// oldest first, one for each client that waits, and a connection that
// turns idle while clients wait is closed at once. A connection in the
// middle of a request keeps its slot; the read and write timeouts bound
// it. Serve the http.Server with ConnState set to the bound's connState.
type connBound struct {
	net.Listener
	slots   chan struct{} // one token per connection served
	done    chan struct{} // closed by Close: waiting Accepts return
	closeMu sync.Once
	waiting atomic.Int64 // Accepts waiting for a slot

	mu   sync.Mutex
	idle []net.Conn // idle connections, oldest first
}

func newConnBound(ln net.Listener, n int) *connBound {
	return &connBound{Listener: ln, slots: make(chan struct{}, max(n, 1)), done: make(chan struct{})}
}

// Accept waits for a slot, making room by closing an idle connection when
// there is none, then accepts.
func (l *connBound) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.waiting.Add(1)
		l.evictOldest()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			l.waiting.Add(-1)
			return nil, net.ErrClosed
		}
		l.waiting.Add(-1)
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &boundConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close closes the listener and ends the Accepts that wait for a slot.
func (l *connBound) Close() error {
	l.closeMu.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState follows the connections between requests (http.Server's
// ConnState hook).
func (l *connBound) connState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateIdle:
		if l.waiting.Load() > 0 {
			_ = c.Close() // someone waits for the slot it holds
			return
		}
		l.mu.Lock()
		l.idle = append(l.idle, c)
		l.mu.Unlock()
	case http.StateActive, http.StateClosed, http.StateHijacked:
		l.forget(c)
	}
}

func (l *connBound) forget(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.idle {
		if x == c {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			return
		}
	}
}

// evictOldest closes the connection idle the longest, if any.
func (l *connBound) evictOldest() {
	l.mu.Lock()
	if len(l.idle) == 0 {
		l.mu.Unlock()
		return
	}
	c := l.idle[0]
	l.idle = l.idle[1:]
	l.mu.Unlock()
	_ = c.Close()
}

// boundConn gives its slot back once, when closed.
type boundConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *boundConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
