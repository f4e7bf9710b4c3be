package gateway

import (
	"testing"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/wire"
)

func TestDesiredAgentsIsTheCeilingOfStreamsPerAgentUpToTheCap(t *testing.T) {
	for _, c := range []struct {
		streams, perAgent, max, want int
	}{
		{0, 10, 3, 0},   // no streams want no agents
		{1, 10, 3, 1},   // one stream wants one
		{10, 10, 3, 1},  // an exact multiple wants no spare
		{11, 10, 3, 2},  // one over wants another
		{20, 10, 3, 2},  // exact again
		{31, 10, 3, 3},  // the cap
		{500, 10, 3, 3}, // far past the cap
		{500, 10, 0, 50},
		{7, 1, 0, 7},
		{5, 0, 3, 0}, // no threshold: no signal
	} {
		if got := desiredAgents(c.streams, c.perAgent, c.max); got != c.want {
			t.Errorf("desiredAgents(%d streams, %d per agent, max %d) = %d, want %d", c.streams, c.perAgent, c.max, got, c.want)
		}
	}
}

func agentWith(load, queue int, state string, purposes ...string) session.Agent {
	return session.Agent{Cand: session.Candidate{Load: load, Queue: queue, State: state, Purposes: purposes}}
}

func TestScaleViewsSumEachPurposesAgentsAndApplyItsOwnRule(t *testing.T) {
	cfg := Scale{ScaleRule: ScaleRule{StreamsPerAgent: 10, MaxAgents: 4},
		Purposes: map[string]ScaleRule{"record": {StreamsPerAgent: 2}, "transcode": {MaxAgents: 1}}}
	agents := []session.Agent{
		agentWith(9, 0, wire.StateServing, "relay"),
		agentWith(8, 2, wire.StateServing, "relay", "record"),
		agentWith(4, 0, wire.StateDraining, "relay"), // its streams are still to carry; it is not a current agent
	}
	got := scaleViews(cfg, agents)
	want := map[string]struct{ streams, queued, agents, per, max, desired int }{
		"record":    {8, 2, 1, 2, 4, 4},   // ⌈10/2⌉ = 5, capped at the global 4
		"relay":     {21, 2, 2, 10, 4, 3}, // ⌈23/10⌉
		"transcode": {0, 0, 0, 10, 1, 0},  // configured, no agent yet
	}
	if len(got) != len(want) {
		t.Fatalf("views %+v, want purposes %v", got, want)
	}
	for _, v := range got {
		w, ok := want[v.Purpose]
		if !ok || v.Desired == nil || v.Streams != w.streams || v.Queued != w.queued || v.Agents != w.agents ||
			v.StreamsPerAgent != w.per || v.MaxAgents != w.max || *v.Desired != w.desired {
			t.Errorf("%s: %+v (desired %v), want %+v", v.Purpose, v, v.Desired, w)
		}
	}
	for _, v := range scaleViews(Scale{}, agents) {
		if v.Desired != nil {
			t.Errorf("with no threshold %s has desired %d", v.Purpose, *v.Desired)
		}
	}
}
