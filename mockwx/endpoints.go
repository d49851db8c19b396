package mockwx

import (
	"slices"
	"strings"
)

// endpointSpec is what a fault rule may say about an endpoint.
type endpointSpec struct {
	push       bool // a push to the app, not a WeChat API call: "*" skips it, no errcode/http_status
	touser     bool // match.touser applies (the call names a user)
	templateID bool // match.template_id applies
}

// endpoints registers every endpoint a rule can name; adding an endpoint is
// one line here and a Decide call in its handler.
var endpoints = map[Endpoint]endpointSpec{
	EndpointToken:        {},
	EndpointStableToken:  {},
	EndpointTemplateSend: {touser: true, templateID: true},
	EndpointUserInfo:     {touser: true},
	EndpointUserGet:      {},
	EndpointTemplateList: {},
	EndpointCustomSend:   {touser: true},
	EndpointCallback:     {push: true, touser: true, templateID: true},
	EndpointEvent:        {push: true, touser: true},
	EndpointAny:          {touser: true, templateID: true},
}

// endpointsWith lists, sorted, the endpoints whose spec passes ok.
func endpointsWith(ok func(endpointSpec) bool) string {
	var names []string
	for e, spec := range endpoints {
		if ok(spec) {
			names = append(names, string(e))
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
