package mockwx

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// DeliveryStatusAction sets the Status of the TEMPLATESENDJOBFINISH report
// of an accepted send: {"type":"delivery_status","delivery_status":"failed:user block"}.
// It applies to the "template_send" and "callback" endpoints only.
type DeliveryStatusAction struct {
	// DeliveryStatus is "success" or starts with "failed".
	DeliveryStatus string `json:"delivery_status"`
}

var _ ActionKind = (*DeliveryStatusAction)(nil)

// ActionType returns "delivery_status".
func (*DeliveryStatusAction) ActionType() ActionType { return ActionDeliveryStatus }

func (a *DeliveryStatusAction) check(prefix string) []string {
	if a.DeliveryStatus != "success" && !strings.HasPrefix(a.DeliveryStatus, "failed") {
		return []string{fmt.Sprintf("%sdelivery_status: %s (got %q)", prefix, deliveryChoices, a.DeliveryStatus)}
	}
	return nil
}

func (a *DeliveryStatusAction) endpointProblem(prefix string, e Endpoint) string {
	if e != EndpointTemplateSend && e != EndpointCallback {
		return fmt.Sprintf("%sdelivery_status: only allowed on endpoint template_send or callback (got %q)", prefix, string(e))
	}
	return ""
}

func (*DeliveryStatusAction) answers() bool { return true }

func (a *DeliveryStatusAction) decide(d *Decision, _ *rand.Rand) { d.DeliveryStatus = a.DeliveryStatus }

func (a *DeliveryStatusAction) cloneKind() ActionKind { c := *a; return &c }
