package wxpushd

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// minIdle is how long a keep-alive connection must have been idle before
// it may be closed to make room: one idle for less is about to be used
// again by a client that sends request after request, and closing it
// would reset the request already on its way.
const minIdle = 250 * time.Millisecond

// connBound is a listener that serves at most a bound of connections at
// once, so that a flood of clients waits in the kernel's accept queue
// instead of using up file descriptors. Unlike netutil.LimitListener it
// does not let idle connections hold their slots: a keep-alive connection
// between two requests does nothing but costs a slot for the whole idle
// timeout, so anyone who opens connections, sends one cheap request on
// each (a probe needs no key) and stays silent could keep every other
// client out, WeChat's callbacks included.
//
// So when every slot is taken, the next client is accepted (it really
// waits: the serve loop asks for the next connection at once, and that
// alone is no reason to close anything) and held until a slot is free;
// meanwhile idle connections are closed for it, oldest first, one at a
// time. Only a connection idle for at least minIdle that has received no
// byte since it went idle is closed. A connection in the middle of a
// request keeps its slot; the read and write timeouts bound it. Serve the
// http.Server with ConnState set to the bound's connState.
type connBound struct {
	net.Listener
	slots   chan struct{} // one token per connection served
	done    chan struct{} // closed by Close: a held client is let go
	closeMu sync.Once
	now     func() time.Time

	mu   sync.Mutex
	idle []idleConn // idle connections, oldest first
}

// idleConn is a connection that went idle, when, and how many reads it had
// made then.
type idleConn struct {
	c     *boundConn
	since time.Time
	reads int64
}

func newConnBound(ln net.Listener, n int) *connBound {
	return &connBound{Listener: ln, slots: make(chan struct{}, max(n, 1)), done: make(chan struct{}), now: time.Now}
}

// Accept returns the next client once it has a slot, making room for it
// by closing idle connections when every slot is taken.
func (l *connBound) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		return l.wrap(c), nil
	default:
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(minIdle / 5)
	defer tick.Stop()
	for {
		select {
		case l.slots <- struct{}{}:
			return l.wrap(c), nil
		default:
		}
		l.evictOldest()
		select {
		case l.slots <- struct{}{}:
			return l.wrap(c), nil
		case <-l.done:
			_ = c.Close()
			return nil, net.ErrClosed
		case <-tick.C:
		}
	}
}

func (l *connBound) wrap(c net.Conn) *boundConn {
	return &boundConn{Conn: c, release: func() { <-l.slots }}
}

// Close closes the listener and lets go of a client held for a slot.
func (l *connBound) Close() error {
	l.closeMu.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState follows the connections between requests (http.Server's
// ConnState hook).
func (l *connBound) connState(c net.Conn, state http.ConnState) {
	bc, ok := c.(*boundConn)
	if !ok {
		return
	}
	switch state {
	case http.StateIdle:
		l.mu.Lock()
		l.idle = append(l.idle, idleConn{c: bc, since: l.now(), reads: bc.reads.Load()})
		l.mu.Unlock()
	case http.StateActive, http.StateClosed, http.StateHijacked:
		l.forget(bc)
	}
}

func (l *connBound) forget(c *boundConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.idle {
		if x.c == c {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			return
		}
	}
}

// evictOldest closes the connection idle the longest, if it has been idle
// for minIdle and has received nothing since (a request on its way).
func (l *connBound) evictOldest() {
	now := l.now()
	l.mu.Lock()
	var victim *boundConn
	for i, x := range l.idle {
		if now.Sub(x.since) < minIdle {
			break // the rest went idle later still
		}
		if x.c.reads.Load() == x.reads {
			victim = x.c
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Close()
	}
}

// boundConn counts the reads that brought bytes and gives its slot back
// once, when closed.
type boundConn struct {
	net.Conn
	reads   atomic.Int64
	once    sync.Once
	release func()
}

func (c *boundConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

func (c *boundConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
