package node

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// relay is being written; this placeholder keeps the package compiling.
type relay struct {
	log      *slog.Logger
	draining atomic.Bool
}

func newRelay(log *slog.Logger) *relay { return &relay{log: log} }

func (r *relay) Serve(ctx context.Context, ln *quic.Listener) error { <-ctx.Done(); return nil }
func (r *relay) Streams() int                                       { return 0 }
func (r *relay) Drain()                                             { r.draining.Store(true) }
