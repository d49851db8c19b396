package mockwx

import "math/rand/v2"

// ErrCodeAction answers the call with a WeChat error instead of processing
// it: {"type":"errcode","errcode":45009,"errmsg":"..."}. It applies to every
// endpoint but "event" (a push to the app has no WeChat answer).
type ErrCodeAction struct {
	// ErrCode is the errcode answered; non-zero.
	ErrCode int `json:"errcode"`
	// ErrMsg is the errmsg answered; empty means WeChat's text for the code.
	ErrMsg string `json:"errmsg,omitempty"`
}

var _ ActionKind = (*ErrCodeAction)(nil)

// ActionType returns "errcode".
func (*ErrCodeAction) ActionType() ActionType { return ActionErrCode }

func (a *ErrCodeAction) check(prefix string) []string {
	if a.ErrCode == 0 {
		return []string{prefix + "errcode: must be non-zero"}
	}
	return nil
}

func (a *ErrCodeAction) endpointProblem(prefix string, e Endpoint) string {
	if e == EndpointEvent {
		return prefix + "errcode: not available on endpoint event, a push to the app (give a fault or a latency)"
	}
	return ""
}

func (*ErrCodeAction) answers() bool { return true }

func (a *ErrCodeAction) decide(d *Decision, _ *rand.Rand) {
	d.ErrCode, d.ErrMsg = a.ErrCode, a.ErrMsg
}

func (a *ErrCodeAction) cloneKind() ActionKind { c := *a; return &c }
