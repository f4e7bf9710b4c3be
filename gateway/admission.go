package gateway

import (
	"context"
	"fmt"
	"time"
)

// admission is a request the throttle policy admits or not, whatever its
// protocol.
type admission struct {
	kind     string // wire.KindPublish or wire.KindPlay
	stream   string
	path     string // the request path (HTTP) or the namespace (MoQ)
	protocol string
	client   string
}

// admit asks the throttle policy about a request and reports whether it goes on;
// when it does not, out says how to answer.
func (g *Gateway) admit(ctx context.Context, a admission) (out ThrottleOutput, ok bool, err error) {
	in := &ThrottleInput{Kind: a.kind, StreamID: a.stream, Path: a.path, Protocol: a.protocol, Client: a.client,
		NowNanos: time.Now().UnixNano(), Pools: g.poolFigures()}
	out, err = g.policy.Throttle(ctx, in)
	if err != nil {
		return out, false, fmt.Errorf("throttle policy: %w", err)
	}
	switch out.Action {
	case Admit, Queue, Origin:
		// Queue: the agent's own wait queue holds the request; Origin: this
		// gateway is the origin for media, so origin is admission.
		return out, true, nil
	}
	g.m.throttled.Inc()
	return out, false, nil
}

// poolFigures sums the relay pool figures that agents publish in their tags.
func (g *Gateway) poolFigures() []PoolFigures {
	f := PoolFigures{Purpose: g.cfg.Purpose}
	for _, a := range g.agentsView() {
		f.Concurrent += a.Cand.Capacity
		f.Active += a.Cand.Load
		f.Queued += a.Cand.Queue
	}
	return []PoolFigures{f}
}
