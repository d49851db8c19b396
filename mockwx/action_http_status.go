package mockwx

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
)

// HTTPStatusAction answers the call with a non-2xx HTTP status and an HTML
// body, as a gateway in front of WeChat would:
// {"type":"http_status","http_status":502}. It applies to every endpoint but
// "event".
type HTTPStatusAction struct {
	// HTTPStatus is the status answered, 400 to 599.
	HTTPStatus int `json:"http_status"`
}

var _ ActionKind = (*HTTPStatusAction)(nil)

// ActionType returns "http_status".
func (*HTTPStatusAction) ActionType() ActionType { return ActionHTTPStatus }

func (a *HTTPStatusAction) check(prefix string) []string {
	if a.HTTPStatus < 400 || a.HTTPStatus > 599 {
		return []string{fmt.Sprintf("%shttp_status: must be between 400 and 599 (got %d)", prefix, a.HTTPStatus)}
	}
	return nil
}

func (a *HTTPStatusAction) endpointProblem(prefix string, e Endpoint) string {
	if e == EndpointEvent {
		return prefix + "http_status: not available on endpoint event, a push to the app (give a fault or a latency)"
	}
	return ""
}

func (*HTTPStatusAction) answers() bool { return true }

func (a *HTTPStatusAction) decide(d *Decision, _ *rand.Rand) { d.HTTPStatus = a.HTTPStatus }

func (a *HTTPStatusAction) cloneKind() ActionKind { c := *a; return &c }

// writeHTTPStatus is the action's effect on a WeChat API call.
func writeHTTPStatus(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "<html><head><title>"+http.StatusText(status)+"</title></head><body>mockwx injected "+http.StatusText(status)+"</body></html>\n")
}
