package harness

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ProbePath is the route of a HandlerServer that answers 200 and records
// the first request: how a deployment's reach to the handler is checked.
const ProbePath = "/_harness/probe"

// HandlerServer serves a Spec.Handler on a listener of this process.
type HandlerServer struct {
	srv *http.Server
	ln  net.Listener

	mu        sync.Mutex
	probeFrom string // the remote address of the first probe
	probeAt   time.Time
}

// ServeHandler listens on addr and serves h, and the probe at ProbePath.
func ServeHandler(h http.Handler, addr string) (*HandlerServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &HandlerServer{ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ProbePath, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.probeFrom == "" {
			s.probeFrom, s.probeAt = r.RemoteAddr, time.Now()
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("/", h)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the listener's address.
func (s *HandlerServer) Addr() string { return s.ln.Addr().String() }

// Probed returns where the first probe came from and when ("" when none
// came).
func (s *HandlerServer) Probed() (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probeFrom, s.probeAt
}

// Close stops serving; a nil server is fine.
func (s *HandlerServer) Close() {
	if s != nil {
		_ = s.srv.Close()
	}
}
