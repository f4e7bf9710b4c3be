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
// order of preference, and whether a request is admitted at all. A Policy reads
// its input and does not modify it: the candidates are shared between
// decisions.
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

// agentList is the alive agents, from serf tags, built once per membership
// change (cluster.Changes) and shared: its users must not modify it. Building
// it copies and encodes every member's tags, which costs more than the
// decision that uses it.
type agentList struct {
	agents []agentView
	cands  []Candidate // the agents' candidates, in the same order
	byID   map[string]agentView
	at     uint64 // the cluster change count it was built at
}

// agentList returns the current list. The change count is read under the same
// lock as the list, so one count, and so one version, names one list.
func (g *Gateway) agentList() *agentList {
	g.viewMu.Lock()
	defer g.viewMu.Unlock()
	if n := g.cluster.Changes(); g.view == nil || g.view.at != n {
		l := &agentList{agents: g.buildAgentsView(), at: n}
		l.byID = make(map[string]agentView, len(l.agents))
		for _, a := range l.agents {
			l.cands = append(l.cands, a.Cand)
			l.byID[a.ID] = a
		}
		g.view = l
	}
	return g.view
}

// agentsView lists the alive agents (shared: do not modify; an append copies).
func (g *Gateway) agentsView() []agentView { return slices.Clip(g.agentList().agents) }

// candidates are the agents as the route policy's candidates, but avoid, and the
// list's version for the policy host (abi.RouteInput.CandidatesVersion): one
// more than the change count the list was built at, so the same version
// promises the same list. Leaving an agent out makes a list of its own, copied
// and without a version. The list is shared: policies only read their input.
func (g *Gateway) candidates(avoid string) (*agentList, []Candidate, uint64) {
	l := g.agentList()
	if avoid == "" || l.byID[avoid].ID == "" {
		return l, slices.Clip(l.cands), l.at + 1
	}
	cands := make([]Candidate, 0, len(l.cands))
	for _, c := range l.cands {
		if c.ID != avoid {
			cands = append(cands, c)
		}
	}
	return l, cands, 0
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
