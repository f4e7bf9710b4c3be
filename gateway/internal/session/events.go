package session

import (
	"bufio"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/internal/wire"
)

// watchAgent follows an agent's event stream (once per agent, while a node link
// of this gateway is placed on it) so that a media link to a node the agent saw
// die is dropped at once: the link re-attaches to the replacement without
// waiting for its idle timeout.
func (c *Core) watchAgent(api string) {
	c.mu.Lock()
	if c.watching[api] {
		c.mu.Unlock()
		return
	}
	c.watching[api] = true
	c.mu.Unlock()
	c.goOwned(func() {
		defer func() {
			c.mu.Lock()
			delete(c.watching, api)
			c.mu.Unlock()
		}()
		backoff := 100 * time.Millisecond
		for c.ctx.Err() == nil && c.usesAgent(api) {
			start := time.Now()
			c.followEvents(api)
			if time.Since(start) > 10*time.Second {
				backoff = 100 * time.Millisecond
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	})
}

// nodeDown drops the links to a node its agent saw die, so they re-attach at
// once, and tells Config.Events which of this gateway's streams it carried.
func (c *Core) nodeDown(node string) {
	var agent string
	streams := map[string]bool{}
	c.links.each(func(pl placement) bool { return pl.Node == node }, func(l *nodeLink) {
		agent = l.placement().Agent
		streams[l.stream] = true
		l.drop(closeNodeDown, "node down")
	})
	if len(streams) == 0 {
		return // none of ours: another gateway's listeners hear of it
	}
	c.emit(webhook.Event{Type: webhook.NodeFailed, Agent: agent, Node: node, Streams: slices.Sorted(maps.Keys(streams)),
		Reason: "the agent saw the node exit"})
}

// usesAgent reports whether a node link of this gateway is placed on api.
func (c *Core) usesAgent(api string) bool {
	return c.links.any(func(pl placement) bool { return pl.API == api })
}

func (c *Core) followEvents(api string) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+api+wire.PathEvents, nil)
	if err != nil {
		return
	}
	resp, err := c.agents.Streaming().Do(req)
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
			c.nodeDown(ev.Node)
		}
		if !c.usesAgent(api) {
			return
		}
	}
}
