package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// watchAgent follows an agent's event stream (once per agent) so that a media link
// to a node the agent saw die is dropped at once: the publisher or subscription
// re-attaches to the replacement without waiting for the link's idle timeout.
func (g *Gateway) watchAgent(api string) {
	g.mu.Lock()
	if g.watching == nil {
		g.watching = map[string]bool{}
	}
	if g.watching[api] {
		g.mu.Unlock()
		return
	}
	g.watching[api] = true
	g.mu.Unlock()
	g.goOwned(func() {
		defer func() {
			g.mu.Lock()
			delete(g.watching, api)
			g.mu.Unlock()
		}()
		backoff := 100 * time.Millisecond
		for g.ctx.Err() == nil && g.usesAgent(api) {
			start := time.Now()
			g.followEvents(api)
			if time.Since(start) > 10*time.Second {
				backoff = 100 * time.Millisecond
			}
			select {
			case <-g.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	})
}

// usesAgent reports whether a local publisher or subscription is placed on api.
func (g *Gateway) usesAgent(api string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.pubs {
		p.mu.Lock()
		on := p.place.API == api
		p.mu.Unlock()
		if on {
			return true
		}
	}
	for _, s := range g.subs {
		s.mu.Lock()
		on := s.place.API == api
		s.mu.Unlock()
		if on {
			return true
		}
	}
	return false
}

func (g *Gateway) followEvents(api string) {
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+api+wire.PathEvents, nil)
	if err != nil {
		return
	}
	hc := *g.agents.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	// A silent stream (no keepalive for 30 s) is dead.
	alive := time.AfterFunc(30*time.Second, cancel)
	defer alive.Stop()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		alive.Reset(30 * time.Second)
		var ev wire.Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if ev.T == wire.EventNodeDown {
			g.nodeDown(ev.Node)
		}
		if !g.usesAgent(api) {
			return
		}
	}
}

// nodeDown drops every media link to node.
func (g *Gateway) nodeDown(node string) {
	g.mu.Lock()
	pubs := make([]*publisher, 0, len(g.pubs))
	for _, p := range g.pubs {
		pubs = append(pubs, p)
	}
	subs := make([]*subscription, 0, len(g.subs))
	for _, s := range g.subs {
		subs = append(subs, s)
	}
	g.mu.Unlock()
	for _, p := range pubs {
		p.mu.Lock()
		link := p.link
		on := p.place.Node == node
		p.mu.Unlock()
		if on && link != nil {
			_ = link.CloseWithError(3, "node down")
		}
	}
	for _, s := range subs {
		s.mu.Lock()
		link := s.link
		on := s.place.Node == node
		s.mu.Unlock()
		if on && link != nil {
			_ = link.CloseWithError(3, "node down")
		}
	}
}
