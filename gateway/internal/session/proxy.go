package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/abi"
)

// ProxyRequest asks where proxied calls for a stream go.
type ProxyRequest struct {
	Stream, Client string
	Headers        map[string]string // the request headers the route policy may see
	Avoid          string            // an agent that just failed a call for the stream
}

// ProxyAgent is the agent that proxied calls for a stream go to: the one that
// carries its media (so its services can read it), else one that holds it for
// calls (another gateway placed it), else one the route policy chooses (op
// "proxy"), which then holds it — SDR's distribution mapping, kept by the
// agents, so every gateway finds the same one.
func (c *Core) ProxyAgent(ctx context.Context, req ProxyRequest) (Agent, error) {
	if a, ok := c.findProxyStream(ctx, req.Stream, req.Avoid); ok {
		return a, nil
	}
	l, cands, version := c.candidates(req.Avoid)
	in := &RouteInput{StreamID: req.Stream, Op: abi.OpProxy, Protocol: "http", ClientAddr: req.Client,
		Headers: abi.PairsOf(req.Headers), Purpose: c.cfg.Purpose, Candidates: cands, CandidatesVersion: version}
	out, err := c.policy.Route(ctx, in)
	if err != nil {
		return Agent{}, fmt.Errorf("route policy: %w", err)
	}
	if out.Reject != nil {
		return Agent{}, &Error{Status: out.Reject.Status, Kind: "route-rejected", Title: "The route policy refused the stream", Detail: out.Reject.Reason}
	}
	var errs []error
	for _, id := range out.Agents {
		a, ok := l.byID[id]
		if !ok || id == req.Avoid {
			continue
		}
		var ps wire.ProxyStream
		path := strings.Replace(wire.PathProxyStream, "{id}", req.Stream, 1)
		if err := c.agents.Do(ctx, http.MethodPut, a.API, path, nil, &ps); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		return a, nil
	}
	return Agent{}, &Error{Status: http.StatusServiceUnavailable, Kind: "no-agent", Title: "No agent can take calls for the stream",
		Detail: fmt.Sprintf("%d agents known: %v", len(l.agents), errors.Join(errs...))}
}

// findProxyStream asks every agent at once whether it has the stream, and
// prefers the one with its media.
func (c *Core) findProxyStream(ctx context.Context, stream, avoid string) (Agent, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	path := strings.Replace(wire.PathProxyStream, "{id}", stream, 1)
	var mu sync.Mutex
	var held, media Agent
	var wg sync.WaitGroup
	for _, a := range c.agentsView() {
		if a.ID == avoid {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ps wire.ProxyStream
			if err := c.agents.Do(ctx, http.MethodGet, a.API, path, nil, &ps); err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if ps.Media {
				media = a
				cancel() // nothing beats the media's agent
			} else if held.ID == "" {
				held = a
			}
		}()
	}
	wg.Wait()
	if media.ID != "" {
		return media, true
	}
	return held, held.ID != ""
}
