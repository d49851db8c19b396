// Package metrics holds wxpushd's Prometheus collectors on a private
// registry (no global state): one Metrics per service instance. Labels
// carry app names, errcodes, reasons and routes — never a secret.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the service's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Accepted        *prometheus.CounterVec   // app
	Replayed        *prometheus.CounterVec   // app: idempotent replays
	Sent            *prometheus.CounterVec   // app
	Failed          *prometheus.CounterVec   // app, reason
	Attempts        *prometheus.CounterVec   // app, errcode ("0" success, "transport", "http_5xx"...)
	Retries         *prometheus.CounterVec   // app, class
	Reclaimed       prometheus.Counter       // stream entries taken over from a dead worker
	InFlight        prometheus.Gauge         // sends under way in this instance
	TokenRefreshes  *prometheus.CounterVec   // app, result (ok, error, budget_refused)
	TokenBudgetUsed *prometheus.GaugeVec     // app: token calls today (shared counter)
	TokenBudget     *prometheus.GaugeVec     // app: the daily token call budget TokenBudgetUsed counts towards
	TokenInvalid    *prometheus.CounterVec   // app, result (deleted, stale): 40001/40014/42001 seen
	SendSeconds     *prometheus.HistogramVec // app: one WeChat send call
	EndToEndSeconds *prometheus.HistogramVec // app: accepted -> sent
	HTTPRequests    *prometheus.CounterVec   // route, code
	HTTPSeconds     *prometheus.HistogramVec // route
	RedisErrors     *prometheus.CounterVec   // op
	// Callbacks counts WeChat callback requests by app ("_unknown" for a
	// name not configured) and result (a fixed set: see package callback).
	Callbacks *prometheus.CounterVec // app, result
	// DeliveryReports counts recorded delivery reports by what applying
	// them did (delivered, failed, parked, final, gone, not_sent).
	DeliveryReports *prometheus.CounterVec // app, outcome
	// AppPaused is 1 for the reason an app is paused (shared state, as
	// this instance last saw it), 0 for the others: alert on
	// wxpush_app_paused{reason="app_error"} == 1.
	AppPaused *prometheus.GaugeVec // app, reason
	// AppPauses counts the pauses this instance started.
	AppPauses *prometheus.CounterVec // app, reason
	// AppWaiting is the number of an app's messages held back (pause or
	// rate limit).
	AppWaiting *prometheus.GaugeVec // app
	// QuotaUsed is the sends WeChat accepted in the app's quota day.
	QuotaUsed *prometheus.GaugeVec // app
	// Held counts messages a worker put in their app's wait set instead of
	// sending them, by cause (paused, rate_limit).
	Held *prometheus.CounterVec // app, cause
	// Webhooks counts status webhook deliveries by result (delivered,
	// retry, gave_up, dropped).
	Webhooks *prometheus.CounterVec // app, result
	// StoreResets counts the store resets this instance noticed: the
	// store epoch vanished (Redis came back empty) or another instance
	// rewrote it. Every instance counts each reset once: alert on
	// increase(wxpush_store_resets_total[10m]) > 0.
	StoreResets prometheus.Counter
	// ClockOffset is Redis's clock minus this host's, in seconds: the
	// correction the workers run with.
	ClockOffset prometheus.Gauge
	// RateLimited counts /v1 requests refused with 429 by the inbound
	// rate limits, by scope (key, global) and key: the 1-based position
	// of the API key in the configured list ("none" without
	// authentication), never the key.
	RateLimited *prometheus.CounterVec // scope, key
	// EventsReceived counts verified inbound pushes other than delivery
	// reports by type (a fixed set of WeChat's types, "other" for the
	// rest) and result (recorded, duplicate).
	EventsReceived *prometheus.CounterVec // app, type, result
	// EventWebhooks counts event webhook deliveries by outcome
	// (delivered, retry, gave_up, expired).
	EventWebhooks *prometheus.CounterVec // app, outcome
	// Replies counts passive replies answered, by mode (plain, encrypted).
	Replies *prometheus.CounterVec // app, mode
	// SendsSkipped counts messages failed without calling WeChat, by
	// reason (not_following).
	SendsSkipped *prometheus.CounterVec // app, reason
}

// New returns the collectors registered on a fresh registry, with the Go
// runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	e2e := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	m := &Metrics{
		Registry:        r,
		Accepted:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_messages_accepted_total", Help: "Messages durably queued by the API."}, []string{"app"}),
		Replayed:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_messages_replayed_total", Help: "Requests answered from an idempotency key."}, []string{"app"}),
		Sent:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_messages_sent_total", Help: "Messages WeChat accepted (msgid returned)."}, []string{"app"}),
		Failed:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_messages_failed_total", Help: "Messages that ended failed, by reason."}, []string{"app", "reason"}),
		Attempts:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_send_attempts_total", Help: "WeChat send attempts by outcome (errcode, or transport/timeout/http_NNN/malformed)."}, []string{"app", "errcode"}),
		Retries:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_retries_total", Help: "Sends scheduled again, by errcode class."}, []string{"app", "class"}),
		Reclaimed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "wxpush_queue_reclaimed_total", Help: "Queue entries reclaimed from workers that stopped without acknowledging."}),
		InFlight:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "wxpush_sends_in_flight", Help: "WeChat sends under way in this instance."}),
		TokenRefreshes:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_token_refreshes_total", Help: "Access token fetches from WeChat by this instance, by result."}, []string{"app", "result"}),
		TokenBudgetUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wxpush_token_budget_used", Help: "Token calls made today by all instances (shared counter)."}, []string{"app"}),
		TokenBudget:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wxpush_token_daily_budget", Help: "Token calls allowed per app per day across instances (the limit wxpush_token_budget_used counts towards)."}, []string{"app"}),
		TokenInvalid:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_token_invalidations_total", Help: "Token-invalid errcodes seen, by whether the cached token was deleted or was already replaced."}, []string{"app", "result"}),
		SendSeconds:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wxpush_send_duration_seconds", Help: "Duration of one WeChat template send call.", Buckets: latency}, []string{"app"}),
		EndToEndSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wxpush_accept_to_sent_seconds", Help: "From API acceptance to WeChat accepting the message.", Buckets: e2e}, []string{"app"}),
		HTTPRequests:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_http_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"}),
		HTTPSeconds:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wxpush_http_request_duration_seconds", Help: "API request duration by route.", Buckets: latency}, []string{"route"}),
		ClockOffset:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "wxpush_clock_offset_seconds", Help: "Redis's clock minus this host's (the workers run on Redis's clock)."}),
		StoreResets:     prometheus.NewCounter(prometheus.CounterOpts{Name: "wxpush_store_resets_total", Help: "Times this instance found the Redis store had lost its data (the store epoch vanished or was rewritten)."}),
		RedisErrors:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_redis_errors_total", Help: "Redis operations that failed, by operation."}, []string{"op"}),
		Callbacks:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_callbacks_total", Help: "WeChat callback requests by app and result."}, []string{"app", "result"}),
		DeliveryReports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_delivery_reports_total", Help: "Delivery reports applied, by outcome (delivered, failed, parked, final, gone, not_sent)."}, []string{"app", "outcome"}),
		AppPaused:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wxpush_app_paused", Help: "1 when the app is paused for the reason (minute_limit, daily_quota, token_budget, app_error), else 0."}, []string{"app", "reason"}),
		AppPauses:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_app_pauses_total", Help: "App pauses started by this instance, by reason."}, []string{"app", "reason"}),
		AppWaiting:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wxpush_app_waiting_messages", Help: "Messages of the app held back by a pause or the rate limit."}, []string{"app"}),
		QuotaUsed:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wxpush_app_quota_used_today", Help: "Sends WeChat accepted since the app's last quota reset (all instances)."}, []string{"app"}),
		Held:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_messages_held_total", Help: "Messages put in their app's wait set instead of being sent, by cause (paused, rate_limit)."}, []string{"app", "cause"}),
		Webhooks:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_status_webhooks_total", Help: "Status webhook deliveries by result (delivered, retry, gave_up, dropped)."}, []string{"app", "result"}),
		EventsReceived:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_events_received_total", Help: "Verified inbound pushes (events and user messages, not delivery reports) by type and result (recorded, duplicate)."}, []string{"app", "type", "result"}),
		EventWebhooks:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_event_webhook_deliveries_total", Help: "Event webhook deliveries by outcome (delivered, retry, gave_up, expired)."}, []string{"app", "outcome"}),
		Replies:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_callback_replies_total", Help: "Passive replies answered to pushes, by mode (plain, encrypted)."}, []string{"app", "mode"}),
		SendsSkipped:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_sends_skipped_total", Help: "Messages failed without calling WeChat (no quota spent), by reason (not_following)."}, []string{"app", "reason"}),
		RateLimited:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wxpush_http_rate_limited_total", Help: "API requests refused with 429 by the inbound rate limits, by scope (key, global) and API key position (never the key)."}, []string{"scope", "key"}),
	}
	for _, c := range []prometheus.Collector{
		m.Accepted, m.Replayed, m.Sent, m.Failed, m.Attempts, m.Retries, m.Reclaimed, m.InFlight,
		m.TokenRefreshes, m.TokenBudgetUsed, m.TokenBudget, m.TokenInvalid, m.SendSeconds, m.EndToEndSeconds,
		m.HTTPRequests, m.HTTPSeconds, m.RedisErrors, m.Callbacks, m.DeliveryReports,
		m.AppPaused, m.AppPauses, m.AppWaiting, m.QuotaUsed, m.Held, m.Webhooks, m.StoreResets, m.ClockOffset, m.RateLimited,
		m.EventsReceived, m.EventWebhooks, m.Replies, m.SendsSkipped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		f(c)
	}
	return m
}

// QueueStats is what the queue gauges read at scrape time.
type QueueStats struct {
	Depth            float64 // messages waiting: stream backlog + delayed retries
	Pending          float64 // delivered to a worker, not yet acknowledged
	Delayed          float64 // waiting in the retry schedule
	OldestAgeSeconds float64 // age of the oldest waiting message
}

// RegisterQueue adds the queue gauges, read from fn at scrape time.
func (m *Metrics) RegisterQueue(fn func() QueueStats) {
	gauge := func(name, help string, pick func(QueueStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return pick(fn()) })
	}
	m.Registry.MustRegister(
		gauge("wxpush_queue_depth", "Messages waiting to be sent (stream backlog and delayed retries).", func(s QueueStats) float64 { return s.Depth }),
		gauge("wxpush_queue_pending", "Queue entries delivered to a worker and not yet acknowledged.", func(s QueueStats) float64 { return s.Pending }),
		gauge("wxpush_queue_delayed", "Messages waiting for their retry time.", func(s QueueStats) float64 { return s.Delayed }),
		gauge("wxpush_queue_oldest_age_seconds", "Age of the oldest waiting message.", func(s QueueStats) float64 { return s.OldestAgeSeconds }),
	)
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
