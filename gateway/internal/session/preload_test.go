package session

import (
	"context"
	"testing"
)

func TestStreamRulesMatchTheirIdOrPrefixAndTheFirstMatchDecides(t *testing.T) {
	core := &Core{cfg: Config{Purpose: "relay"}}
	core.rules.Store(&[]StreamRule{{ID: "cam-vip", Purpose: "record"}, {ID: "cam-*", MaxViewers: 2}, {ID: "lobby"}})
	for _, c := range []struct {
		stream, rule, purpose string
		ok                    bool
	}{
		{"cam-vip", "cam-vip", "record", true},
		{"cam-7", "cam-*", "relay", true},
		{"lobby", "lobby", "relay", true},
		{"lobby2", "", "relay", false},
		{"cam", "", "relay", false},
	} {
		r, ok := core.Rule(c.stream)
		if ok != c.ok || r.ID != c.rule || core.purposeOf(c.stream) != c.purpose {
			t.Errorf("%s: rule %q (%v), purpose %q; want %q (%v), %q", c.stream, r.ID, ok, core.purposeOf(c.stream), c.rule, c.ok, c.purpose)
		}
	}
	if !(StreamRule{ID: "lobby"}).Preloaded() || (StreamRule{ID: "cam-*"}).Preloaded() {
		t.Error("only an exact id is preloaded")
	}
}

// A stream whose rule names agent tags is offered only the agents that carry
// them, whichever the route policy would rank first otherwise.
func TestAStreamRuleWithTagsIsPlacedOnlyOnAnAgentCarryingThem(t *testing.T) {
	us := &agentAPI{id: "us", tags: map[string]string{"region": "us-east"}}
	eu := &agentAPI{id: "eu", tags: map[string]string{"region": "eu-west"}}
	core := clusterOf(t, nil, us, eu)
	core.SetStreams([]StreamRule{{ID: "eu-*", Tags: map[string]string{"region": "eu-west"}}, {ID: "us-*", Tags: map[string]string{"region": "us-east"}}})
	for stream, want := range map[string]string{"eu-1": "eu", "us-1": "us", "eu-2": "eu"} {
		p, err := core.Publish(context.Background(), PublishRequest{Stream: stream, Protocol: "whip", Tracks: 1})
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if got := p.link.placement().Agent; got != want {
			t.Errorf("%s was placed on %s; want %s, the agent with its rule's tags", stream, got, want)
		}
		p.Abort()
	}
	core.SetStreams([]StreamRule{{ID: "ap-*", Tags: map[string]string{"region": "ap-south"}}})
	if _, err := core.Publish(context.Background(), PublishRequest{Stream: "ap-1", Protocol: "whip", Tracks: 1}); err == nil {
		t.Error("a stream whose tags no agent carries was placed")
	}
}
