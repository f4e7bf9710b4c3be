package session

import (
	"github.com/VictoriaMetrics/metrics"
)

// coreMetrics are the gateway's Prometheus series.
type coreMetrics struct {
	publishers       *metrics.Counter // used as a gauge: Inc/Dec
	viewers          *metrics.Counter
	packetsIn        *metrics.Counter
	bytesIn          *metrics.Counter
	packetsOut       *metrics.Counter
	bytesOut         *metrics.Counter
	reattaches       *metrics.Counter
	keyframeRequests *metrics.Counter
	nacks            *metrics.Counter
	dropped          *metrics.Counter // RTP a track's fan-out could not keep up with
	refused          *metrics.Counter
	throttled        *metrics.Counter
}

func newCoreMetrics(s *metrics.Set, c *Core) *coreMetrics {
	m := &coreMetrics{
		publishers:       s.NewCounter(`sluice_gateway_sessions{kind="publish"}`),
		viewers:          s.NewCounter(`sluice_gateway_sessions{kind="play"}`),
		packetsIn:        s.NewCounter(`sluice_gateway_rtp_packets_total{dir="in"}`),
		bytesIn:          s.NewCounter(`sluice_gateway_rtp_bytes_total{dir="in"}`),
		packetsOut:       s.NewCounter(`sluice_gateway_rtp_packets_total{dir="out"}`),
		bytesOut:         s.NewCounter(`sluice_gateway_rtp_bytes_total{dir="out"}`),
		reattaches:       s.NewCounter(`sluice_gateway_media_reattaches_total`),
		keyframeRequests: s.NewCounter(`sluice_gateway_keyframe_requests_total`),
		nacks:            s.NewCounter(`sluice_gateway_link_nacks_total`),
		dropped:          s.NewCounter(`sluice_gateway_rtp_dropped_total`),
		refused:          s.NewCounter(`sluice_gateway_refused_total`),
		throttled:        s.NewCounter(`sluice_gateway_throttled_total`),
	}
	s.NewGauge(`sluice_gateway_agents`, func() float64 { return float64(len(c.agentsView())) })
	return m
}
