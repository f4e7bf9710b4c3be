package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// watchAgent follows an agent's event stream (once per agent, while a node link
// of this gateway is placed on it) so that a media link to a node the agent saw
// die is dropped at once: the link re-attaches to the replacement without
// waiting for its idle timeout.
func (g *Gateway) watchAgent(api string) {
	g.mu.Lock()
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

// usesAgent reports whether a node link of this gateway is placed on api.
func (g *Gateway) usesAgent(api string) bool {
	return g.links.any(func(pl placement) bool { return pl.API == api })
}

func (g *Gateway) followEvents(api string) {
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+api+wire.PathEvents, nil)
	if err != nil {
		return
	}
	resp, err := g.agents.streaming().Do(req)
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
			g.links.each(func(pl placement) bool { return pl.Node == ev.Node },
				func(l *nodeLink) { l.drop(closeNodeDown, "node down") })
		}
		if !g.usesAgent(api) {
			return
		}
	}
}
