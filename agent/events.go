package agent

import (
	"sync"

	"github.com/sluicegw/sluice/internal/wire"
)

// eventHub is the agent's event stream (GET /agent/v1/events): it hands each
// event to every watcher. It has its own lock, a leaf: publish may be called with
// the Manager's state lock held, and the hub calls nothing while it holds mu.
type eventHub struct {
	mu       sync.Mutex
	watchers map[chan wire.Event]struct{}
	closed   bool
}

// watcherBuffer is how many events a watcher may lag behind before it loses some.
const watcherBuffer = 64

// watch subscribes; call stop to unsubscribe. The channel closes when the hub
// does (at once if it already has).
func (h *eventHub) watch() (events <-chan wire.Event, stop func()) {
	ch := make(chan wire.Event, watcherBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	if h.watchers == nil {
		h.watchers = map[chan wire.Event]struct{}{}
	}
	h.watchers[ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		delete(h.watchers, ch)
		h.mu.Unlock()
	}
}

// publish hands ev to every watcher that has room for it. A watcher that does not
// keep up loses events rather than holding up the agent: events are hints, and
// gateways also notice a dead node by its link's idle timeout.
func (h *eventHub) publish(ev wire.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.watchers {
		select {
		case ch <- ev:
		default:
		}
	}
}

// close ends every watcher's stream. It is safe to call twice.
func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.watchers {
		close(ch)
	}
	h.watchers = nil
}
