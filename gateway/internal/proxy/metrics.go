package proxy

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Metrics are the proxy's Prometheus series.
type Metrics struct {
	calls, failed, timeouts, cancelled, replaced *metrics.Counter
	throttled, toOrigin, limited504              *metrics.Counter

	set *metrics.Set
}

// NewMetrics registers the proxy's series in s.
func NewMetrics(s *metrics.Set) *Metrics {
	return &Metrics{
		calls:      s.NewCounter(`sluice_gateway_proxy_calls_total`),
		failed:     s.NewCounter(`sluice_gateway_proxy_failures_total{why="unavailable"}`),
		timeouts:   s.NewCounter(`sluice_gateway_proxy_failures_total{why="timeout"}`),
		cancelled:  s.NewCounter(`sluice_gateway_proxy_failures_total{why="client-gone"}`),
		replaced:   s.NewCounter(`sluice_gateway_proxy_reroutes_total`),
		throttled:  s.NewCounter(`sluice_gateway_proxy_throttled_total{answer="refused"}`),
		toOrigin:   s.NewCounter(`sluice_gateway_proxy_throttled_total{answer="origin"}`),
		limited504: s.NewCounter(`sluice_gateway_proxy_failures_total{why="upstream-limited"}`),
		set:        s,
	}
}

// limited registers the gauge of upstreams under M2's 504 rule.
func (m *Metrics) limited(list func() []string) {
	m.set.NewGauge(`sluice_gateway_proxy_limited_upstreams`, func() float64 { return float64(len(list())) })
}

// requestBuckets are the upper bounds of a proxied request's duration, from a
// local service's 1 ms to a slow upstream's 30 s.
var requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// RequestDuration is the histogram of the requests a route carries, from the
// gateway receiving them to the answer's end:
// sluice_gateway_proxy_request_duration_seconds{route}. Routes come from the
// config, so the label is bounded by it.
func RequestDuration(s *metrics.Set, route string) *metrics.PrometheusHistogram {
	return s.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`sluice_gateway_proxy_request_duration_seconds{route=%q}`, route), requestBuckets)
}
