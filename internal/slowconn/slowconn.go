// Package slowconn is the slow client of the slow-client attacks in
// wxpushd's tests and the conformance suites: a connection that sends a
// request's headers, then its body a byte at a time, and notices when the
// server closes it.
package slowconn

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"
)

// BodyLength is the declared length of a slow request's body: 16 KiB,
// within every route's limit.
const BodyLength = 16 << 10

// Conn is a connection in the middle of a request's body.
type Conn struct {
	c      net.Conn
	done   chan struct{} // closed when the server closed the connection
	answer []byte        // what the server answered before closing
}

// Open connects to addr (within 10 s) and sends the headers of a POST to
// target (a path with its query), with header (CRLF-terminated lines) and
// a body of BodyLength that starts with prefix. Trickle sends the rest.
func Open(addr, target, header, prefix string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n%s", target, addr, BodyLength, header, prefix); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("write to %s: %w", addr, err)
	}
	s := &Conn{c: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.answer, _ = io.ReadAll(c) // ends when the server closes (EOF or reset)
	}()
	return s, nil
}

// Closed reports whether the server closed the connection.
func (s *Conn) Closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Answer is what the server sent before it closed the connection; it is
// complete once Closed reports true.
func (s *Conn) Answer() []byte {
	if !s.Closed() {
		return nil
	}
	return s.answer
}

// Close closes the connection from the client's side.
func (s *Conn) Close() error { return s.c.Close() }

// Trickle writes one byte to each open connection every interval until
// ctx is done.
func Trickle(ctx context.Context, conns []*Conn, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, s := range conns {
			if s != nil && !s.Closed() {
				_ = s.c.SetWriteDeadline(time.Now().Add(interval))
				_, _ = s.c.Write([]byte("a"))
			}
		}
	}
}
