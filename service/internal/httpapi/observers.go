package httpapi

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxpush/wxpush/service/internal/metrics"
)

// observers caches the metric children the request path uses, so that a
// request does not hash its label values and look them up in the vector
// every time: the first request of a (route, code) or app creates the
// child, as WithLabelValues would, and later ones find it in a sync.Map.
type observers struct {
	m       *metrics.Metrics
	reqs    sync.Map // routeCode -> prometheus.Counter
	secs    sync.Map // route -> prometheus.Observer
	accepts sync.Map // app -> prometheus.Counter
	replays sync.Map // app -> prometheus.Counter
}

type routeCode struct {
	route string
	code  int
}

func newObservers(m *metrics.Metrics) *observers { return &observers{m: m} }

func (o *observers) requests(route string, code int) prometheus.Counter {
	k := routeCode{route, code}
	if v, ok := o.reqs.Load(k); ok {
		return v.(prometheus.Counter)
	}
	v, _ := o.reqs.LoadOrStore(k, o.m.HTTPRequests.WithLabelValues(route, strconv.Itoa(code)))
	return v.(prometheus.Counter)
}

func (o *observers) seconds(route string) prometheus.Observer {
	if v, ok := o.secs.Load(route); ok {
		return v.(prometheus.Observer)
	}
	v, _ := o.secs.LoadOrStore(route, o.m.HTTPSeconds.WithLabelValues(route))
	return v.(prometheus.Observer)
}

func (o *observers) accepted(app string) prometheus.Counter {
	return counterOf(&o.accepts, o.m.Accepted, app)
}

func (o *observers) replayed(app string) prometheus.Counter {
	return counterOf(&o.replays, o.m.Replayed, app)
}

func counterOf(cache *sync.Map, vec *prometheus.CounterVec, app string) prometheus.Counter {
	if v, ok := cache.Load(app); ok {
		return v.(prometheus.Counter)
	}
	v, _ := cache.LoadOrStore(app, vec.WithLabelValues(app))
	return v.(prometheus.Counter)
}
