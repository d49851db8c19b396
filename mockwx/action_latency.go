package mockwx

import (
	"math/rand/v2"
	"strings"
)

// LatencyAction only delays the call, by a delay drawn from its Latency:
// {"type":"latency","fixed_ms":250}, {"type":"latency","min_ms":10,"max_ms":20}
// or {"type":"latency","p50_ms":20,"p99_ms":400}. It applies to every
// endpoint. It does not answer, so a latency rule never shadows another
// rule: every firing latency counts and the largest delay wins. (A rule
// that answers can add a delay too, with the rule's own latency field.)
type LatencyAction struct {
	Latency
}

var _ ActionKind = (*LatencyAction)(nil)

// ActionType returns "latency".
func (*LatencyAction) ActionType() ActionType { return ActionLatency }

func (a *LatencyAction) check(prefix string) []string {
	name := strings.TrimSuffix(prefix, ".")
	if name == "" {
		name = "latency"
	}
	return a.problems(name)
}

func (*LatencyAction) endpointProblem(string, Endpoint) string { return "" }

func (*LatencyAction) answers() bool { return false }

func (a *LatencyAction) decide(d *Decision, rng *rand.Rand) {
	d.Delay = max(d.Delay, a.sample(rng))
}

func (a *LatencyAction) cloneKind() ActionKind {
	return &LatencyAction{Latency: *a.clone()}
}
