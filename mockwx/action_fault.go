package mockwx

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"

	"github.com/wxpush/wxpush/internal/wechat"
)

// FaultKind is a transport-level failure the mock can inject instead of a
// well-formed answer.
type FaultKind string

// Transport faults a rule can inject.
const (
	// FaultReset closes the connection without writing a response.
	FaultReset FaultKind = "reset"
	// FaultTimeout never answers; the client has to give up on its own.
	FaultTimeout FaultKind = "timeout"
	// FaultMalformed answers HTTP 200 with a body that is not valid JSON.
	FaultMalformed FaultKind = "malformed"
	// FaultEmpty answers HTTP 200 with an empty body.
	FaultEmpty FaultKind = "empty"
)

const faultChoices = "must be one of reset, timeout, malformed, empty"

// FaultAction breaks the answer to a call that was processed (a send is
// accepted, a token minted) and then lost: {"type":"fault","fault":"reset"}.
// It applies to every endpoint; on "callback" any fault loses the push
// entirely, on "event" the app's answer to one try (WeChat retries).
type FaultAction struct {
	// Fault is reset, timeout, malformed or empty.
	Fault FaultKind `json:"fault"`
}

var _ ActionKind = (*FaultAction)(nil)

// ActionType returns "fault".
func (*FaultAction) ActionType() ActionType { return ActionFault }

func (a *FaultAction) check(prefix string) []string {
	switch a.Fault {
	case FaultReset, FaultTimeout, FaultMalformed, FaultEmpty:
		return nil
	}
	return []string{fmt.Sprintf("%sfault: %s (got %q)", prefix, faultChoices, string(a.Fault))}
}

func (*FaultAction) endpointProblem(string, Endpoint) string { return "" }

func (*FaultAction) answers() bool { return true }

func (a *FaultAction) decide(d *Decision, _ *rand.Rand) { d.Fault = a.Fault }

func (a *FaultAction) cloneKind() ActionKind { c := *a; return &c }

// breakResponse answers v, or breaks the answer as the decision's
// connection fault says: the action's effect on a WeChat API call.
func (s *Server) breakResponse(w http.ResponseWriter, r *http.Request, d Decision, v any) {
	switch d.Fault {
	case "":
		writeWeChat(w, v)
		return
	case FaultReset:
		s.stats.countInjected(string(FaultReset))
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST instead of FIN
			}
			_ = conn.Close()
			return
		}
		panic(http.ErrAbortHandler) // HTTP/2 or a recorder: abort the stream
	case FaultTimeout:
		s.stats.countInjected(string(FaultTimeout))
		select { // hang until the client gives up or the mock closes
		case <-r.Context().Done():
		case <-s.closing:
		}
		panic(http.ErrAbortHandler)
	case FaultMalformed:
		s.stats.countInjected(string(FaultMalformed))
		b, _ := wechat.Marshal(v)
		w.Header().Set("Content-Type", "application/json; encoding=utf-8")
		_, _ = w.Write(b[:len(b)/2])
	case FaultEmpty:
		s.stats.countInjected(string(FaultEmpty))
		w.Header().Set("Content-Type", "application/json; encoding=utf-8")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}
}
