package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/abi"
)

// placement is where a stream's media goes: an agent, one of its nodes, and the
// agent session that holds the stream there.
type placement struct {
	Agent   string
	API     string
	Session string
	Node    string
	Media   string
	Epoch   uint64
}

func placementOf(a Agent, resp wire.OpenResponse) placement {
	return placement{Agent: a.ID, API: a.API, Session: resp.Session, Node: resp.Node, Media: resp.Media, Epoch: resp.Epoch}
}

// placeRequest is what the route policy decides a new stream's agent from.
type placeRequest struct {
	stream, protocol, client string
	headers                  map[string]string // the request headers the policy may see
	avoid                    string            // an agent not to try (it failed)
}

// place ranks agents for a new stream with the route policy — asked once — and
// opens a publish session on the first that accepts.
func (c *Core) place(ctx context.Context, req placeRequest) (placement, error) {
	l, cands, version := c.candidates(req.avoid)
	if tags := c.tagsOf(req.stream); len(tags) > 0 {
		// The stream's rule names the agents it may go to: a list of its own.
		cands, version = withTags(cands, tags), 0
	}
	purpose := c.purposeOf(req.stream)
	in := &RouteInput{StreamID: req.stream, Op: wire.KindPublish, Protocol: req.protocol, ClientAddr: req.client,
		Headers: abi.PairsOf(req.headers), Purpose: purpose, Candidates: cands, CandidatesVersion: version}
	out, err := c.policy.Route(ctx, in)
	if err != nil {
		return placement{}, fmt.Errorf("route policy: %w", err)
	}
	if out.Reject != nil {
		return placement{}, &Error{Status: out.Reject.Status, Kind: "route-rejected", Title: "The route policy refused the stream", Detail: out.Reject.Reason}
	}
	var errs []error
	for _, id := range out.Agents {
		a, ok := l.byID[id]
		if !ok || id == req.avoid {
			continue
		}
		resp, err := c.agents.Open(ctx, a.API, c.openRequest(req.stream, wire.KindPublish))
		if err != nil {
			if isAgentStatus(err, http.StatusConflict) {
				return placement{}, errBusy(req.stream, err.Error())
			}
			if isAgentKind(err, "queue-timeout") {
				// The request waited its turn for the whole queue timeout: waiting
				// again in the next agent's queue would double what the operator set.
				return placement{}, &Error{Status: http.StatusServiceUnavailable, Kind: "queue-timeout",
					Title: "Every node stayed busy", Detail: fmt.Sprintf("waited in agent %s's queue: %v", id, err)}
			}
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		return placementOf(a, resp), nil
	}
	if len(errs) == 0 {
		return placement{}, &Error{Status: http.StatusServiceUnavailable, Kind: "no-agent", Title: "No agent can carry the stream",
			Detail: fmt.Sprintf("%d agents known, none serving purpose %q with the stream's tags", len(l.agents), purpose)}
	}
	return placement{}, &Error{Status: http.StatusServiceUnavailable, Kind: "no-agent", Title: "No agent accepted the stream", Detail: errors.Join(errs...).Error()}
}

func (c *Core) openRequest(stream, kind string) wire.OpenRequest {
	return wire.OpenRequest{Stream: stream, Purpose: c.purposeOf(stream), Kind: kind, Gateway: c.cfg.ID}
}

func errBusy(stream, where string) error {
	return &Error{Status: http.StatusConflict, Kind: "stream-busy", Title: "The stream already has a publisher", Detail: "stream " + stream + " " + where}
}

// lookup finds the agent carrying a stream without changing anything anywhere: it
// asks every agent's read-only stream query at once and takes the first that has
// it. Agents are the one record of where a stream is (a gateway keeps no state
// another gateway needs), so the answer is never stale; RATIONALE.md says why this
// beats a directory kept from gossip or events at sluice's cluster sizes.
func (c *Core) lookup(ctx context.Context, stream string) (Agent, wire.StreamInfo, error) {
	agents := c.agentsView()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	type found struct {
		a  Agent
		si wire.StreamInfo
	}
	hit := make(chan found, 1)
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			si, err := c.agents.Stream(ctx, a.API, stream)
			if err != nil {
				if !isAgentStatus(err, http.StatusNotFound) && ctx.Err() == nil {
					c.log.Debug("gateway: stream lookup", "agent", a.ID, "stream", stream, "err", err)
				}
				return
			}
			select {
			case hit <- found{a, si}:
				cancel() // the others need not finish
			default:
			}
		}()
	}
	go func() { wg.Wait(); close(hit) }()
	if f, ok := <-hit; ok {
		return f.a, f.si, nil
	}
	return Agent{}, wire.StreamInfo{}, ErrNotLive
}

// openPlay finds the agent carrying a stream and opens a play session there.
func (c *Core) openPlay(ctx context.Context, stream string) (placement, error) {
	a, _, err := c.lookup(ctx, stream)
	if err != nil {
		return placement{}, err
	}
	resp, err := c.agents.Open(ctx, a.API, c.openRequest(stream, wire.KindPlay))
	if err != nil {
		if isAgentStatus(err, http.StatusNotFound) {
			return placement{}, ErrNotLive // it ended between the two calls
		}
		return placement{}, err
	}
	return placementOf(a, resp), nil
}

func (c *Core) closeAgentSession(pl placement) {
	if pl.Session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.agents.CloseSession(ctx, pl.API, pl.Session); err != nil && !isAgentStatus(err, http.StatusNotFound) {
		c.log.Warn("gateway: closing agent session failed", "agent", pl.Agent, "session", pl.Session, "err", err)
	}
}

// Agent is an alive agent as the gateway sees it in the membership.
type Agent struct {
	ID   string
	API  string
	Cand Candidate
	// Concurrent is the node processes the agent's healthy pools may run (M2's
	// concurrent), from its wire.TagConcurrent tag.
	Concurrent int
}

// agentList is the alive agents, from serf tags, built once per membership
// change (cluster.Changes) and shared: its users must not modify it. Building
// it copies and encodes every member's tags, which costs more than the
// decision that uses it.
type agentList struct {
	agents []Agent
	cands  []Candidate // the agents' candidates, in the same order
	byID   map[string]Agent
	at     uint64 // the cluster change count it was built at
}

// agentList returns the current list. The change count is read under the same
// lock as the list, so one count, and so one version, names one list.
func (c *Core) agentList() *agentList {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	if n := c.cluster.Changes(); c.view == nil || c.view.at != n {
		l := &agentList{agents: c.buildAgentsView(), at: n}
		l.byID = make(map[string]Agent, len(l.agents))
		for _, a := range l.agents {
			l.cands = append(l.cands, a.Cand)
			l.byID[a.ID] = a
		}
		c.view = l
	}
	return c.view
}

// agentsView lists the alive agents (shared: do not modify; an append copies).
func (c *Core) agentsView() []Agent { return slices.Clip(c.agentList().agents) }

// candidates are the agents as the route policy's candidates, but avoid, and the
// list's version for the policy host (abi.RouteInput.CandidatesVersion): one
// more than the change count the list was built at, so the same version
// promises the same list. Leaving an agent out makes a list of its own, copied
// and without a version. The list is shared: policies only read their input.
func (c *Core) candidates(avoid string) (*agentList, []Candidate, uint64) {
	l := c.agentList()
	if avoid == "" || l.byID[avoid].ID == "" {
		return l, slices.Clip(l.cands), l.at + 1
	}
	cands := make([]Candidate, 0, len(l.cands))
	for _, cand := range l.cands {
		if cand.ID != avoid {
			cands = append(cands, cand)
		}
	}
	return l, cands, 0
}

func (c *Core) buildAgentsView() []Agent {
	out := []Agent{}
	for _, m := range c.cluster.Members() {
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
		out = append(out, Agent{ID: id, API: m.Tags[wire.TagAPI], Cand: Candidate{
			ID:       id,
			Tags:     abi.PairsOf(m.Tags),
			Purposes: purposes,
			Capacity: atoi(m.Tags[wire.TagCapacity]),
			Load:     atoi(m.Tags[wire.TagLoad]),
			Queue:    atoi(m.Tags[wire.TagQueue]),
			State:    state,
		}, Concurrent: atoi(m.Tags[wire.TagConcurrent])})
	}
	return out
}

// ServingAgents is the number of agents the gateway could place a stream on now.
func (c *Core) ServingAgents() int {
	n := 0
	for _, a := range c.agentsView() {
		if a.Cand.State == wire.StateServing && len(a.Cand.Purposes) > 0 {
			n++
		}
	}
	return n
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
