package session

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/internal/medialink"
)

// eventLog records the events a core tells.
type eventLog struct {
	mu  sync.Mutex
	evs []webhook.Event
}

func (l *eventLog) add(ev webhook.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *eventLog) wait(t *testing.T, typ string) webhook.Event {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		for _, ev := range l.evs {
			if ev.Type == typ {
				l.mu.Unlock()
				return ev
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("no %s event; got %+v", typ, l.evs)
	return webhook.Event{}
}

// An agent's node-down event becomes one node.failed naming this gateway's
// streams on that node, and nothing for a node none of them is on.
func TestANodeDownIsToldOnceWithTheStreamsItCarried(t *testing.T) {
	var log eventLog
	c := &Core{cfg: Config{Events: log.add}}
	for _, l := range []*nodeLink{
		{stream: "cam2", place: placement{Agent: "a1", Node: "n1"}},
		{stream: "cam1", place: placement{Agent: "a1", Node: "n1"}},
		{stream: "cam1", place: placement{Agent: "a1", Node: "n1"}}, // its downlink
		{stream: "other", place: placement{Agent: "a1", Node: "n2"}},
	} {
		c.links.add(l)
	}
	c.nodeDown("n1")
	c.nodeDown("n9")
	if len(log.evs) != 1 {
		t.Fatalf("events %+v; want one node.failed", log.evs)
	}
	ev := log.evs[0]
	if ev.Type != webhook.NodeFailed || ev.Agent != "a1" || ev.Node != "n1" || !slices.Equal(ev.Streams, []string{"cam1", "cam2"}) {
		t.Errorf("node.failed = %+v; want agent a1, node n1, streams [cam1 cam2]", ev)
	}
}

// A publication's uplink that is placed elsewhere after losing its node tells
// stream.moved, from where to where; a downlink that follows does not.
func TestAnUplinkPlacedOnAnotherNodeTellsStreamMoved(t *testing.T) {
	core := clusterOf(t, nil)
	var log eventLog
	core.cfg.Events = log.add
	for _, role := range []string{medialink.RoleSubscribe, medialink.RolePublish} {
		ctx, cancel := context.WithCancel(context.Background())
		l := &nodeLink{core: core, stream: "cam1", role: role,
			place:    placement{Agent: "a1", Node: "n1", Media: "127.0.0.1:9"}, // nothing answers: the link is lost at once
			onPacket: func([]byte) {}, onAttach: func() {},
			relocate: func(context.Context, placement) (placement, error) {
				return placement{Agent: "a2", Node: "n2", Media: "127.0.0.1:9"}, nil
			}}
		done := make(chan struct{})
		go func() { defer close(done); _ = l.run(ctx) }()
		if role == medialink.RolePublish {
			ev := log.wait(t, webhook.StreamMoved)
			if ev.Stream != "cam1" || ev.FromAgent != "a1" || ev.FromNode != "n1" || ev.Agent != "a2" || ev.Node != "n2" {
				t.Errorf("stream.moved = %+v; want cam1 from a1/n1 to a2/n2", ev)
			}
		} else {
			for deadline := time.Now().Add(5 * time.Second); l.placement().Node != "n2" && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if l.placement().Node != "n2" {
				t.Fatal("the downlink was not relocated")
			}
		}
		cancel()
		<-done
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	n := 0
	for _, ev := range log.evs {
		if ev.Type == webhook.StreamMoved {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d stream.moved events for one uplink and one downlink move; want 1: %+v", n, log.evs)
	}
}
