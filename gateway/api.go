package gateway

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

type metricsWriter interface{ WritePrometheus(w io.Writer) }

func writeProcessMetrics(w io.Writer) { metrics.WriteProcessMetrics(w) }


func (g *Gateway) handleCluster(w http.ResponseWriter, _ *http.Request) {
	ms := g.cluster.Members()
	out := make([]map[string]any, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberView(m))
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"self": g.cluster.Name(), "members": out})
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
	pubs := make([]*publication, 0, len(g.pubs))
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
		pl := p.link.placement()
		if pl.Agent == "" {
			continue // not placed yet
		}
		v := get(p.stream)
		v.Agent, v.Node, v.Since = pl.Agent, pl.Node, p.started
		b := p.bytes.Load()
		v.Bitrate = p.rate.sample(b)
		v.Publisher = &pubView{Gateway: g.cfg.ID, Client: p.client, Protocol: p.protocol, Packets: p.packets.Load(), Bytes: b, Reattaches: p.link.reattaches.Load()}
	}
	for _, s := range subs {
		s.mu.Lock()
		n := s.viewers
		s.mu.Unlock()
		pl := s.link.placement()
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
	problem.WriteJSON(w, http.StatusOK, map[string]any{"streams": list})
}

func (g *Gateway) handleStream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("stream")
	if err := streamid.Validate(id); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return
	}
	if v := g.localStreams()[id]; v != nil {
		problem.WriteJSON(w, http.StatusOK, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	for _, a := range g.agentsView() {
		si, err := g.agents.Stream(ctx, a.API, id)
		if err == nil {
			problem.WriteJSON(w, http.StatusOK, &streamView{Stream: id, Agent: si.Agent, Node: si.Node, Viewers: si.Viewers, Since: si.Since})
			return
		}
	}
	problem.Write(w, http.StatusNotFound, "stream-not-live", "The stream is not live", "no agent carries stream "+id)
}

// memberView is the /v1/cluster shape of a member.
func memberView(m cluster.Member) map[string]any {
	return map[string]any{
		"name":   m.Name,
		"role":   m.Tags[wire.TagRole],
		"id":     m.Tags[wire.TagID],
		"addr":   m.Addr,
		"status": m.Status,
		"tags":   m.Tags,
	}
}
