package gateway

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
)

// Policy makes the gateway's two decisions: which agents may carry a stream, in
// order of preference, and whether a request is admitted at all.
type Policy interface {
	Route(ctx context.Context, in *RouteInput) (RouteOutput, error)
	Throttle(ctx context.Context, in *ThrottleInput) (ThrottleOutput, error)
}

// The decision types are the policy ABI's (package abi), so a Wasm host
// satisfies Policy without conversions.
type (
	RouteInput     = abi.RouteInput
	Candidate      = abi.Candidate
	RouteOutput    = abi.RouteOutput
	Rejection      = abi.Rejection
	ThrottleInput  = abi.ThrottleInput
	PoolFigures    = abi.PoolFigures
	ThrottleOutput = abi.ThrottleOutput
)

// Throttle actions.
const (
	Admit    = abi.Admit
	Queue    = abi.Queue
	Reject   = abi.Reject
	Redirect = abi.Redirect
	Origin   = abi.Origin
)

// nativePolicy admits everything and ranks agents with the built-in route
// policy's own code (rendezvous hashing with bounded load), for gateways built
// without a policy host.
type nativePolicy struct{}

func (nativePolicy) Throttle(context.Context, *ThrottleInput) (ThrottleOutput, error) {
	return ThrottleOutput{Action: Admit}, nil
}

func (nativePolicy) Route(_ context.Context, in *RouteInput) (RouteOutput, error) {
	return policy.RouteHRW(in), nil
}

// agentView is an alive agent as the gateway sees it in the membership.
type agentView struct {
	ID   string
	API  string
	Cand Candidate
}

// agentsView lists the alive agents, from serf tags. The list is built once
// per membership change (cluster.Changes) and shared: callers must not modify
// it. Building it copies and encodes every member's tags, which costs more
// than the decision that uses it.
func (g *Gateway) agentsView() []agentView {
	agents, _ := g.agentsSnapshot()
	return agents
}

// agentsSnapshot is agentsView and the list's version: one more than the
// cluster change count it was built at, so a version names one list.
func (g *Gateway) agentsSnapshot() ([]agentView, uint64) {
	n := g.cluster.Changes()
	g.viewMu.Lock()
	defer g.viewMu.Unlock()
	if g.view == nil || g.viewAt != n {
		g.view, g.viewAt = g.buildAgentsView(), n
	}
	return slices.Clip(g.view), g.viewAt + 1 // an append by a caller copies
}

// candidates are the agents as the route policy's candidates, but avoid, and the
// list's version for the policy host (abi.RouteInput.CandidatesVersion): the
// same version promises the same list. Leaving an agent out makes a list of
// its own, without a version.
func (g *Gateway) candidates(avoid string) ([]agentView, []Candidate, uint64) {
	agents, version := g.agentsSnapshot()
	cands := make([]Candidate, 0, len(agents))
	for _, a := range agents {
		if a.ID == avoid {
			version = 0
			continue
		}
		cands = append(cands, a.Cand)
	}
	return agents, cands, version
}

func (g *Gateway) buildAgentsView() []agentView {
	out := []agentView{}
	for _, m := range g.cluster.Members() {
		if m.Status != "alive" || !m.HasRole(wire.RoleAgent) || m.Tags[wire.TagAPI] == "" {
			continue
		}
		id := m.Tags[wire.TagID]
		if id == "" {
			id = m.Name
		}
		state := m.Tags[wire.TagState]
		if state == "" {
			state = wire.StateServing
		}
		purposes := splitList(m.Tags[wire.TagPurposes])
		for _, f := range splitList(m.Tags[wire.TagFailed]) {
			purposes = slices.DeleteFunc(purposes, func(p string) bool { return p == f })
		}
		out = append(out, agentView{ID: id, API: m.Tags[wire.TagAPI], Cand: Candidate{
			ID:       id,
			Tags:     abi.PairsOf(m.Tags),
			Purposes: purposes,
			Capacity: atoi(m.Tags[wire.TagCapacity]),
			Load:     atoi(m.Tags[wire.TagLoad]),
			Queue:    atoi(m.Tags[wire.TagQueue]),
			State:    state,
		}})
	}
	return out
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
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
