package loadtest

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wxpush/wxpush/scenarios"
	"github.com/wxpush/wxpush/service"
)

// TestDrainAwaitsOnlyReportingApps: the drain waits for (and announces)
// the delivery reports of apps whose callbacks are on; a message of an
// app with callback_mode off never gets one and is not awaited.
func TestDrainAwaitsOnlyReportingApps(t *testing.T) {
	delivered := func(id, app string, st service.Status) *tracked {
		return &tracked{id: id, app: app, deliveries: 1, status: st}
	}
	msgs := []*tracked{
		delivered("a1", "a", service.StatusSent),
		delivered("a2", "a", service.StatusDelivered),
		delivered("a3", "a", service.StatusFailed),
		{id: "a4", app: "a", status: service.StatusQueued}, // not delivered
		delivered("s1", "silent", service.StatusSent),
		delivered("b1", "b", service.StatusSent),
	}
	tests := []struct {
		name string
		apps []scenarios.App
		want []string
	}{
		{"mixed: the silent app's message is not awaited",
			[]scenarios.App{{Name: "a", CallbackMode: "plain"}, {Name: "silent", CallbackMode: "off"}, {Name: "b", CallbackMode: "safe"}},
			[]string{"a1", "b1"}},
		{"every app reports",
			[]scenarios.App{{Name: "a", CallbackMode: "compat"}, {Name: "silent", CallbackMode: "plain"}, {Name: "b", CallbackMode: "plain"}},
			[]string{"a1", "s1", "b1"}},
		{"no app reports: nothing to wait for",
			[]scenarios.App{{Name: "a", CallbackMode: "off"}, {Name: "silent", CallbackMode: "off"}, {Name: "b", CallbackMode: "off"}},
			nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for _, tr := range awaitingReports(msgs, reportingApps(tc.apps)) {
				ids = append(ids, tr.id)
			}
			assert.Equal(t, tc.want, ids)
		})
	}
}
