package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

func fakeNode(id string) *nodeProc {
	return &nodeProc{id: id, purpose: "relay", state: nodeRunning, media: id + ":1", streams: map[string]struct{}{}}
}

func TestAReattachReplacesThePublishSessionAndClosingItEndsTheStream(t *testing.T) {
	tb := newStreamTable()
	s := tb.add("cam", "relay", "gw1", time.Now())
	first := tb.open(s, wire.KindPublish, "gw1")
	viewer := tb.open(s, wire.KindPlay, "gw2")
	again := tb.open(s, wire.KindPublish, "gw1") // the gateway re-attached
	if s.viewers != 1 {
		t.Fatalf("viewers = %d, want 1", s.viewers)
	}
	if _, err := tb.close(first.id); !errors.Is(err, ErrNoSuchSess) {
		t.Fatalf("closing the replaced publish session: %v, want ErrNoSuchSess", err)
	}
	if ended, err := tb.close(viewer.id); ended != nil || err != nil || s.viewers != 0 || tb.get("cam") != s {
		t.Fatalf("closing a play session: ended %v, err %v, viewers %d; the stream must stay", ended, err, s.viewers)
	}
	ended, err := tb.close(again.id)
	if err != nil || ended != s || tb.get("cam") != nil || tb.len() != 0 {
		t.Fatalf("closing the publish session: ended %v, err %v, %d streams left", ended, err, tb.len())
	}
}

func TestAStreamThatMovesToAnotherNodeGetsANewEpoch(t *testing.T) {
	tb := newStreamTable()
	n1, n2 := fakeNode("n1"), fakeNode("n2")
	s := tb.add("cam", "relay", "gw", time.Now())
	tb.place(s, n1)
	tb.place(s, n1) // placed again on the same node: same epoch
	if s.epoch != 1 || s.node != n1 || n1.served != 2 {
		t.Fatalf("on its first node: epoch %d, node %s, served %d", s.epoch, s.node.id, n1.served)
	}
	tb.place(s, n2)
	if s.epoch != 2 || s.node != n2 {
		t.Fatalf("after moving: epoch %d, node %s", s.epoch, s.node.id)
	}
	if si := tb.info(s, "a1"); si.Node != "n2" || si.Media != "n2:1" || si.Epoch != 2 || si.Agent != "a1" {
		t.Fatalf("info = %+v", si)
	}
}

func TestADeadNodesStreamsMoveToItsReplacementUnlessReattachedElsewhereFirst(t *testing.T) {
	tb := newStreamTable()
	dead, other, repl := fakeNode("dead"), fakeNode("other"), fakeNode("repl")
	a := tb.add("a", "relay", "gw", time.Now())
	b := tb.add("b", "relay", "gw", time.Now())
	tb.place(a, dead)
	tb.place(b, dead)
	orphans := tb.orphansOf(dead)
	if len(orphans) != 2 {
		t.Fatalf("%d orphans, want 2", len(orphans))
	}
	dead.state = nodeStopped
	tb.place(b, other) // a gateway re-attached b before the replacement was up
	tb.move(orphans, repl)
	if a.node != repl || a.epoch != 2 {
		t.Fatalf("a: node %s epoch %d, want repl and 2", a.node.id, a.epoch)
	}
	if b.node != other || b.epoch != 2 {
		t.Fatalf("b: node %s epoch %d, want it left on other with epoch 2", b.node.id, b.epoch)
	}
	if _, ok := repl.streams["b"]; ok || len(repl.streams) != 1 {
		t.Fatalf("the replacement carries %v", repl.streams)
	}
}

func TestAPublishThatGotNoNodeIsForgottenButALiveStreamIsNot(t *testing.T) {
	tb := newStreamTable()
	s := tb.add("new", "relay", "gw", time.Now())
	tb.abandon(s)
	if tb.get("new") != nil {
		t.Fatal("a stream whose first publish failed is still listed")
	}
	live := tb.add("live", "relay", "gw", time.Now())
	tb.open(live, wire.KindPublish, "gw")
	tb.abandon(live) // a re-attach that failed: the stream stays for the next one
	if tb.get("live") != live {
		t.Fatal("a live stream was forgotten after a failed re-attach")
	}
}
