package agent

import (
	"testing"

	"github.com/sluicegw/sluice/internal/wire"
)

func TestEveryWatcherGetsEachEventUntilItStops(t *testing.T) {
	var h eventHub
	a, stopA := h.watch()
	b, stopB := h.watch()
	defer stopB()
	h.publish(wire.Event{T: wire.EventNodeDown, Node: "n1"})
	for _, ch := range []<-chan wire.Event{a, b} {
		if ev := <-ch; ev.Node != "n1" {
			t.Fatalf("got %+v", ev)
		}
	}
	stopA()
	h.publish(wire.Event{T: wire.EventNodeDown, Node: "n2"})
	select {
	case ev := <-a:
		t.Fatalf("a stopped watcher got %+v", ev)
	default:
	}
	if ev := <-b; ev.Node != "n2" {
		t.Fatalf("got %+v", ev)
	}
}

func TestAWatcherThatDoesNotReadLosesEventsAndDoesNotHoldUpTheAgent(t *testing.T) {
	var h eventHub
	ch, stop := h.watch()
	defer stop()
	for range 3 * watcherBuffer {
		h.publish(wire.Event{T: wire.EventNodeDown}) // must not block
	}
	if len(ch) != watcherBuffer {
		t.Fatalf("%d events buffered, want %d", len(ch), watcherBuffer)
	}
}

func TestClosingTheHubEndsEveryEventStreamAndLaterOnesAtOnce(t *testing.T) {
	var h eventHub
	ch, stop := h.watch()
	h.close()
	h.close() // twice is fine
	if _, ok := <-ch; ok {
		t.Fatal("an event stream stayed open after close")
	}
	stop()
	late, _ := h.watch()
	if _, ok := <-late; ok {
		t.Fatal("a watch after close stayed open")
	}
	h.publish(wire.Event{T: wire.EventNodeDown}) // no watcher, no panic
}
