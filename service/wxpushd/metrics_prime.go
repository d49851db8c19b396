package wxpushd

import (
	"github.com/wxpush/wxpush/service"
	"github.com/wxpush/wxpush/service/internal/apps"
	"github.com/wxpush/wxpush/service/internal/callback"
	"github.com/wxpush/wxpush/service/internal/metrics"
	"github.com/wxpush/wxpush/service/internal/store"
)

// Label values an instance exports at zero from its start, for each
// configured app: a counter that first appears at 1 is invisible to
// increase() and rate(), so an alert would miss the first failure, and a
// ratio has no denominator until the first message.
var (
	primedFailReasons = []string{
		service.ReasonPermanentErrcode, service.ReasonAttemptsExhausted, service.ReasonUserBlock,
		service.ReasonSystemFailed, service.ReasonFreqLimit, service.ReasonDeliveryFailed,
		service.ReasonUnknownApp, service.ReasonUnconfirmed, service.ReasonNotFollowing,
	}
	primedPauseReasons  = []string{service.PauseMinuteLimit, service.PauseDailyQuota, service.PauseTokenBudget, service.PauseAppError}
	primedTokenResults  = []string{"ok", "error", "budget_refused"}
	primedReportOutcome = []store.DeliveryOutcome{
		store.DeliveryDelivered, store.DeliveryFailed, store.DeliveryParked,
		store.DeliveryFinal, store.DeliveryGone, store.DeliveryNotSent,
	}
	primedCallbackResults = []string{
		callback.ResultVerified, callback.ResultReport, callback.ResultEvent, callback.ResultDuplicate,
		callback.ResultForbidden, callback.ResultDowngrade, callback.ResultReplayed, callback.ResultStale,
		callback.ResultTooLarge, callback.ResultMalformed, callback.ResultUnavailable, callback.ResultUnknownApp,
	}
)

// primeMetrics creates each app's series at zero (the histograms empty):
// messages accepted, sent and failed by reason, pauses (0: not paused),
// token refreshes by result, callbacks by result, and, for apps that take
// callbacks, delivery reports by outcome. Only apps that take callbacks
// get the delivery report series: the "delivery reports missing" alert
// (deploy/prometheus/alerts.yml) matches on them, so an app that never
// gets reports never alerts.
func primeMetrics(m *metrics.Metrics, list []*apps.App) {
	for _, a := range list {
		app := a.Name
		m.Accepted.WithLabelValues(app)
		m.Sent.WithLabelValues(app)
		for _, r := range primedFailReasons {
			m.Failed.WithLabelValues(app, r)
		}
		for _, r := range primedPauseReasons {
			m.AppPaused.WithLabelValues(app, r)
		}
		for _, r := range primedTokenResults {
			m.TokenRefreshes.WithLabelValues(app, r)
		}
		m.TokenBudgetUsed.WithLabelValues(app)
		m.QuotaUsed.WithLabelValues(app)
		m.AppWaiting.WithLabelValues(app)
		m.SendSeconds.WithLabelValues(app)
		m.EndToEndSeconds.WithLabelValues(app)
		for _, r := range primedCallbackResults {
			m.Callbacks.WithLabelValues(app, r)
		}
		if a.HasCallback() {
			for _, o := range primedReportOutcome {
				m.DeliveryReports.WithLabelValues(app, string(o))
			}
		}
	}
}
