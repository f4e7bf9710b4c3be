package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

type metricsWriter interface{ WritePrometheus(w io.Writer) }

func writeProcessMetrics(w io.Writer) { metrics.WriteProcessMetrics(w) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func itoa(n int) string { return strconv.Itoa(n) }

// admit runs the throttle policy for a WHIP or WHEP request and answers for it
// when it does not admit. It reports whether the request goes on.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, kind, stream, proto, client string) bool {
	in := &ThrottleInput{Kind: kind, StreamID: stream, Path: r.URL.Path, Protocol: proto, Client: client, NowNanos: time.Now().UnixNano(), Pools: g.poolFigures()}
	out, err := g.policy.Throttle(r.Context(), in)
	if err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "throttle-failed", "Admission failed", err.Error())
		return false
	}
	switch out.Action {
	case Admit, Queue, Origin:
		// Queue: the agent's own wait queue holds the request; Origin: this
		// gateway is the origin for WebRTC, so origin is admission.
		return true
	case Redirect:
		g.m.throttled.Inc()
		w.Header().Set("Location", out.URL)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return false
	default:
		g.m.throttled.Inc()
		ct := out.ContentType
		if ct == "" {
			ct = "application/json"
		}
		status := out.Status
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		_, _ = w.Write(out.Body)
		return false
	}
}

// poolFigures sums the relay pool figures that agents publish in their tags.
func (g *Gateway) poolFigures() []PoolFigures {
	f := PoolFigures{Purpose: g.cfg.Purpose}
	for _, a := range g.agentsView() {
		f.Concurrent += a.Cand.Capacity
		f.Active += a.Cand.Load
		f.Queued += a.Cand.Queue
	}
	return []PoolFigures{f}
}

func (g *Gateway) handleCluster(w http.ResponseWriter, _ *http.Request) {
	ms := g.cluster.Members()
	out := make([]map[string]any, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberView(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"self": g.cluster.Name(), "members": out})
}

// streamView is the API shape of a stream.
type streamView struct {
	Stream    string    `json:"stream"`
	Agent     string    `json:"agent,omitempty"`
	Node      string    `json:"node,omitempty"`
	Publisher *pubView  `json:"publisher,omitempty"`
	Viewers   int       `json:"viewers"`
	Bitrate   float64   `json:"bitrateBps"`
	Since     time.Time `json:"since,omitzero"`
}

type pubView struct {
	Gateway    string `json:"gateway"`
	Client     string `json:"client,omitempty"`
	Protocol   string `json:"protocol,omitempty"`
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
	Reattaches uint64 `json:"reattaches"`
}

// localStreams lists what this gateway publishes or plays.
func (g *Gateway) localStreams() map[string]*streamView {
	g.mu.Lock()
	pubs := make([]*publisher, 0, len(g.pubs))
	for _, p := range g.pubs {
		pubs = append(pubs, p)
	}
	subs := make([]*subscription, 0, len(g.subs))
	for _, s := range g.subs {
		subs = append(subs, s)
	}
	g.mu.Unlock()
	out := map[string]*streamView{}
	get := func(id string) *streamView {
		if out[id] == nil {
			out[id] = &streamView{Stream: id}
		}
		return out[id]
	}
	for _, p := range pubs {
		p.mu.Lock()
		pl := p.place
		p.mu.Unlock()
		v := get(p.stream)
		v.Agent, v.Node, v.Since = pl.Agent, pl.Node, p.started
		b := p.bytes.Load()
		v.Bitrate = p.rate.sample(b)
		v.Publisher = &pubView{Gateway: g.cfg.ID, Client: p.client, Protocol: p.protocol, Packets: p.packets.Load(), Bytes: b, Reattaches: p.reattaches.Load()}
	}
	for _, s := range subs {
		s.mu.Lock()
		n, pl := len(s.viewers), s.place
		s.mu.Unlock()
		v := get(s.stream)
		v.Viewers += n
		if v.Agent == "" {
			v.Agent, v.Node = pl.Agent, pl.Node
		}
		if v.Bitrate == 0 {
			v.Bitrate = s.rate.sample(s.bytes.Load())
		}
	}
	return out
}

func (g *Gateway) handleStreams(w http.ResponseWriter, _ *http.Request) {
	local := g.localStreams()
	list := make([]*streamView, 0, len(local))
	for _, v := range local {
		list = append(list, v)
	}
	// Streams this gateway does not touch are known to their agents.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, a := range g.agentsView() {
		var infos []wire.StreamInfo
		if err := g.agents.do(ctx, http.MethodGet, a.API, wire.PathStreams, nil, &infos); err != nil {
			continue
		}
		for _, si := range infos {
			if v := local[si.Stream]; v != nil {
				v.Viewers = max(v.Viewers, si.Viewers)
				continue
			}
			list = append(list, &streamView{Stream: si.Stream, Agent: si.Agent, Node: si.Node, Viewers: si.Viewers, Since: si.Since})
		}
	}
	slices.SortFunc(list, func(a, b *streamView) int { return strings.Compare(a.Stream, b.Stream) })
	writeJSON(w, http.StatusOK, map[string]any{"streams": list})
}

func (g *Gateway) handleStream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("stream")
	if err := streamid.Validate(id); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return
	}
	if v := g.localStreams()[id]; v != nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	for _, a := range g.agentsView() {
		si, err := g.agents.Stream(ctx, a.API, id)
		if err == nil {
			writeJSON(w, http.StatusOK, &streamView{Stream: id, Agent: si.Agent, Node: si.Node, Viewers: si.Viewers, Since: si.Since})
			return
		}
	}
	problem.Write(w, http.StatusNotFound, "stream-not-live", "The stream is not live", "no agent carries stream "+id)
}
