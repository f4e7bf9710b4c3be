package session

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
			c.links.each(func(pl placement) bool { return pl.Node == ev.Node },
				func(l *nodeLink) { l.drop(closeNodeDown, "node down") })
		}
		if !c.usesAgent(api) {
			return
		}
	}
}
