package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/medialink"
)

// worker is the media work of one node purpose. The node process owns the control
// channel, heartbeat and lifecycle; a worker owns only its media.
type worker interface {
	// Serve accepts media links on ln, a listener of ep, until ctx ends or ln is
	// closed. It also serves ep's media paths.
	Serve(ctx context.Context, ep *medialink.Endpoint, ln *quic.Listener) error
	// Streams is the number of streams the worker carries now (for heartbeats).
	Streams() int
	// Drain makes the worker refuse new streams while live ones continue.
	Drain()
}

// Purposes lists the node purposes this binary can run.
var Purposes = []string{"relay"}

func newWorker(purpose string, log *slog.Logger) (worker, error) {
	switch purpose {
	case "relay":
		return newRelay(log), nil
	}
	return nil, fmt.Errorf("node: unknown purpose %q (known: %v)", purpose, Purposes)
}
