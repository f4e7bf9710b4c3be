package gateway

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
)

// Scale configures the scale signal: how many agents the cluster's streams
// need, per node purpose, as SDR's per-replica threshold (WDM_WL_THRESHOLD)
// and replica cap (WDM_MAX_REPLICAS) give it:
//
//	desired = min(MaxAgents, ⌈(streams + queued) / StreamsPerAgent⌉)
//
// where streams are those the purpose's agents carry and queued the publishes
// waiting in their queues. An autoscaler (a Kubernetes HPA on the external
// metric sluice_cluster_desired_agents) sets the agents' replicas to it. The
// zero value turns the signal off: GET /v1/scale still shows the inputs.
type Scale struct {
	// ScaleRule is the rule of every purpose without its own.
	ScaleRule
	// Purposes are rules by node purpose; a zero field takes ScaleRule's.
	// Default none.
	Purposes map[string]ScaleRule
}

// ScaleRule is one purpose's threshold and cap.
type ScaleRule struct {
	// StreamsPerAgent is the streams one agent should carry. Default 0: no
	// signal for the purpose.
	StreamsPerAgent int
	// MaxAgents caps the desired agents. Default 0: no cap.
	MaxAgents int
}

// rule is the purpose's rule, its zero fields filled from the default.
func (s Scale) rule(purpose string) ScaleRule {
	r := s.Purposes[purpose]
	if r.StreamsPerAgent == 0 {
		r.StreamsPerAgent = s.StreamsPerAgent
	}
	if r.MaxAgents == 0 {
		r.MaxAgents = s.MaxAgents
	}
	return r
}

// desiredAgents is the formula of Scale: zero streams want zero agents (an
// HPA's minReplicas keeps a floor), and the cap wins over the load.
func desiredAgents(streams, perAgent, maxAgents int) int {
	if perAgent <= 0 || streams <= 0 {
		return 0
	}
	d := (streams + perAgent - 1) / perAgent
	if maxAgents > 0 {
		d = min(d, maxAgents)
	}
	return d
}

// ScaleView is one purpose's line of GET /v1/scale: the inputs and the result.
type ScaleView struct {
	Purpose string `json:"purpose"`
	// Streams are those the purpose's agents carry, Queued the publishes
	// waiting in their queues. An agent of several purposes counts its streams
	// toward each: give each purpose its own agents for exact figures.
	Streams int `json:"streams"`
	Queued  int `json:"queued"`
	// Agents serve the purpose now (not draining, its pool not failed).
	Agents          int `json:"agents"`
	StreamsPerAgent int `json:"streamsPerAgent"`
	MaxAgents       int `json:"maxAgents"`
	// Desired is nil while the purpose has no StreamsPerAgent.
	Desired *int `json:"desired"`
}

// scaleViews computes the signal from the gateway's membership view, which
// every gateway shares by gossip, so each answers the same within a second
// or so. The purposes are those offered by an agent and those configured.
func scaleViews(cfg Scale, agents []session.Agent) []ScaleView {
	byPurpose := map[string]*ScaleView{}
	view := func(p string) *ScaleView {
		v := byPurpose[p]
		if v == nil {
			v = &ScaleView{Purpose: p}
			byPurpose[p] = v
		}
		return v
	}
	for p := range cfg.Purposes {
		view(p)
	}
	for _, a := range agents {
		for _, p := range a.Cand.Purposes {
			v := view(p)
			v.Streams += a.Cand.Load
			v.Queued += a.Cand.Queue
			if a.Cand.State == wire.StateServing {
				v.Agents++
			}
		}
	}
	out := make([]ScaleView, 0, len(byPurpose))
	for _, p := range slices.Sorted(maps.Keys(byPurpose)) {
		v := byPurpose[p]
		r := cfg.rule(p)
		v.StreamsPerAgent, v.MaxAgents = r.StreamsPerAgent, r.MaxAgents
		if r.StreamsPerAgent > 0 {
			d := desiredAgents(v.Streams+v.Queued, r.StreamsPerAgent, r.MaxAgents)
			v.Desired = &d
		}
		out = append(out, *v)
	}
	return out
}

// handleScale is GET /v1/scale.
func (g *Gateway) handleScale(w http.ResponseWriter, _ *http.Request) {
	problem.WriteJSON(w, http.StatusOK, map[string]any{"purposes": scaleViews(g.cfg.Scale, g.core.AgentList())})
}

// writeScaleMetrics writes sluice_cluster_desired_agents{purpose} for every
// purpose with a threshold; the purposes are the operator's pool names, so the
// series are few.
func (g *Gateway) writeScaleMetrics(w io.Writer) {
	head := false
	for _, v := range scaleViews(g.cfg.Scale, g.core.AgentList()) {
		if v.Desired == nil {
			continue
		}
		if !head { // once per family, however many purposes
			metrics.WriteMetadataIfNeeded(w, "sluice_cluster_desired_agents", "gauge")
			head = true
		}
		fmt.Fprintf(w, "sluice_cluster_desired_agents{purpose=%q} %d\n", v.Purpose, *v.Desired)
	}
}
