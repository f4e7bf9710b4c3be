package session

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/internal/promexpo"
)

// StreamSeriesLimit is how many streams get their own per-stream series on a
// gateway's /metrics: the ones with the most viewers (then the highest bitrate,
// then by id). The rest are summed into stream="_other", so a gateway with any
// number of streams writes at most 3×StreamSeriesLimit+2 per-stream series
// (docs/metrics.md). A stream's series go with the stream.
const StreamSeriesLimit = 100

// otherStreams is the label value the streams past StreamSeriesLimit share.
const otherStreams = "_other"

// coreMetrics are the gateway's Prometheus series.
type coreMetrics struct {
	publishers       *liveCount
	viewers          *liveCount
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

// liveCount is a gauge of live sessions that also counts each start, so the
// one Inc a session makes feeds both sluice_gateway_sessions (what is live)
// and sluice_gateway_sessions_total (the publish or play rate).
type liveCount struct {
	live    atomic.Int64
	started *metrics.Counter
}

func newLiveCount(s *metrics.Set, kind string) *liveCount {
	l := &liveCount{started: s.NewCounter(`sluice_gateway_sessions_total{kind="` + kind + `"}`)}
	s.NewGauge(`sluice_gateway_sessions{kind="`+kind+`"}`, func() float64 { return float64(l.live.Load()) })
	return l
}

// Inc counts a session that started.
func (l *liveCount) Inc() { l.live.Add(1); l.started.Inc() }

// Dec counts a session that ended.
func (l *liveCount) Dec() { l.live.Add(-1) }

func newCoreMetrics(s *metrics.Set, c *Core) *coreMetrics {
	m := &coreMetrics{
		publishers:       newLiveCount(s, "publish"),
		viewers:          newLiveCount(s, "play"),
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
	s.RegisterMetricsWriter(c.writeStreamMetrics)
	return m
}

// writeStreamMetrics writes the per-stream series of the streams this gateway
// publishes or plays, computed at scrape time from the live streams so that an
// ended stream's series are gone at the next scrape.
func (c *Core) writeStreamMetrics(w io.Writer) {
	local := c.LocalStreams()
	list := make([]*StreamView, 0, len(local))
	for _, v := range local {
		list = append(list, v)
	}
	slices.SortFunc(list, func(a, b *StreamView) int {
		return cmp.Or(cmp.Compare(b.Viewers, a.Viewers), cmp.Compare(b.Bitrate, a.Bitrate), strings.Compare(a.Stream, b.Stream))
	})
	writeFamily(w, "sluice_gateway_streams", "gauge")
	fmt.Fprintf(w, "sluice_gateway_streams %d\n", len(list))
	shown := list[:min(len(list), StreamSeriesLimit)]
	rest := list[len(shown):]
	writeFamily(w, "sluice_stream_info", "gauge")
	for _, v := range shown {
		proto := ""
		if v.Publisher != nil {
			proto = v.Publisher.Protocol
		}
		fmt.Fprintf(w, "sluice_stream_info{stream=%q,protocol=%q,agent=%q,node=%q} 1\n", v.Stream, promexpo.LabelValue(proto), promexpo.LabelValue(v.Agent), promexpo.LabelValue(v.Node))
	}
	var otherViewers int
	var otherBitrate float64
	for _, v := range rest {
		otherViewers += v.Viewers
		otherBitrate += v.Bitrate
	}
	writeFamily(w, "sluice_stream_viewers", "gauge")
	for _, v := range shown {
		fmt.Fprintf(w, "sluice_stream_viewers{stream=%q} %d\n", v.Stream, v.Viewers)
	}
	if len(rest) > 0 {
		fmt.Fprintf(w, "sluice_stream_viewers{stream=%q} %d\n", otherStreams, otherViewers)
	}
	// Bytes, Prometheus' base unit: a dashboard multiplies by 8 for bit/s.
	writeFamily(w, "sluice_stream_media_bytes_per_second", "gauge")
	for _, v := range shown {
		fmt.Fprintf(w, "sluice_stream_media_bytes_per_second{stream=%q} %g\n", v.Stream, v.Bitrate/8)
	}
	if len(rest) > 0 {
		fmt.Fprintf(w, "sluice_stream_media_bytes_per_second{stream=%q} %g\n", otherStreams, otherBitrate/8)
	}
}

// writeFamily writes a family's HELP and TYPE lines when metadata is exposed.
func writeFamily(w io.Writer, name, typ string) { metrics.WriteMetadataIfNeeded(w, name, typ) }
