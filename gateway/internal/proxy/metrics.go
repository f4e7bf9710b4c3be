package proxy

import "github.com/VictoriaMetrics/metrics"

// Metrics are the proxy's Prometheus series.
type Metrics struct {
	calls, failed, timeouts, cancelled, replaced *metrics.Counter
}

// NewMetrics registers the proxy's series in s.
func NewMetrics(s *metrics.Set) *Metrics {
	return &Metrics{
		calls:     s.NewCounter(`sluice_gateway_proxy_calls_total`),
		failed:    s.NewCounter(`sluice_gateway_proxy_failures_total{why="unavailable"}`),
		timeouts:  s.NewCounter(`sluice_gateway_proxy_failures_total{why="timeout"}`),
		cancelled: s.NewCounter(`sluice_gateway_proxy_failures_total{why="client-gone"}`),
		replaced:  s.NewCounter(`sluice_gateway_proxy_reroutes_total`),
	}
}
