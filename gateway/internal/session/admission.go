package session

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// Admission is a request the throttle policy admits or not, whatever its
// protocol.
type Admission struct {
	Kind     string // wire.KindPublish, wire.KindPlay or wire.KindProxy
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

// WriteThrottled answers an HTTP request the throttle policy did not admit:
// a redirect to the URL it gave, or its status and body (M2's 510
// {"enable":false,"error":"throttle"}), 503 when it gave none.
func WriteThrottled(w http.ResponseWriter, out ThrottleOutput) {
	if out.Action == Redirect {
		w.Header().Set("Location", out.URL)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	ct := out.ContentType
	if ct == "" {
		ct = "application/json"
	}
	status := out.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(out.Body)
}

// poolFigures are the pool figures of the gateway's purpose with M2's meaning,
// summed over the agents a stream may be placed on (serving, offering the
// purpose): Concurrent is their node-process limit (process.*.concurrent),
// Active the streams they carry and Queued the open requests waiting in their
// queues. M2 throttles when the queue reaches concurrent × wait.deactive, so
// the figures are processes and waiting requests, not stream capacities.
func (c *Core) poolFigures() []PoolFigures {
	f := PoolFigures{Purpose: c.cfg.Purpose}
	for _, a := range c.agentsView() {
		if a.Cand.State != wire.StateServing || !slices.Contains(a.Cand.Purposes, c.cfg.Purpose) {
			continue
		}
		f.Concurrent += a.Concurrent
		f.Active += a.Cand.Load
		f.Queued += a.Cand.Queue
	}
	return []PoolFigures{f}
}
