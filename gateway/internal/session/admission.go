package session

import (
	"context"
	"fmt"
	"time"
)

// Admission is a request the throttle policy admits or not, whatever its
// protocol.
type Admission struct {
	Kind     string // wire.KindPublish or wire.KindPlay
	Stream   string
	Path     string // the request path (HTTP) or the namespace (MoQ)
	Protocol string
	Client   string
}

// Admit asks the throttle policy about a request and reports whether it goes on;
// when it does not, out says how to answer.
func (c *Core) Admit(ctx context.Context, a Admission) (out ThrottleOutput, ok bool, err error) {
	in := &ThrottleInput{Kind: a.Kind, StreamID: a.Stream, Path: a.Path, Protocol: a.Protocol, Client: a.Client,
		NowNanos: time.Now().UnixNano(), Pools: c.poolFigures()}
	out, err = c.policy.Throttle(ctx, in)
	if err != nil {
		return out, false, fmt.Errorf("throttle policy: %w", err)
	}
	switch out.Action {
	case Admit, Queue, Origin:
		// Queue: the agent's own wait queue holds the request; Origin: this
		// gateway is the origin for media, so origin is admission.
		return out, true, nil
	}
	c.m.throttled.Inc()
	return out, false, nil
}

// poolFigures sums the relay pool figures that agents publish in their tags.
func (c *Core) poolFigures() []PoolFigures {
	f := PoolFigures{Purpose: c.cfg.Purpose}
	for _, a := range c.agentsView() {
		f.Concurrent += a.Cand.Capacity
		f.Active += a.Cand.Load
		f.Queued += a.Cand.Queue
	}
	return []PoolFigures{f}
}
