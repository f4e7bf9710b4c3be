package session

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// StreamRule is an entry of the config's `streams`: rules for the streams
// whose id matches ID and, when ID is an exact id, a stream the gateway
// places before any publisher comes and keeps placed.
type StreamRule struct {
	// ID is a stream id, or a prefix and "*" ("cam-*"), matching every id
	// that starts with it. The first rule that matches a stream decides.
	ID string
	// Purpose is the node purpose that carries the stream. Default the
	// core's Config.Purpose.
	Purpose string
	// Tags are member tags an agent must carry to be offered to the route
	// policy for the stream. Default none.
	Tags map[string]string
	// MaxViewers bounds the stream's viewers on this gateway; a viewer past
	// it is refused with 403. Default 0: no limit.
	MaxViewers int
	// MaxBitrate is the most bits/s a publisher of the stream may send; the
	// gateway ends one that stays over it (Gateway enforces it). Default 0:
	// no limit.
	MaxBitrate int64
}

// Preloaded reports whether r names one stream (not a pattern).
func (r StreamRule) Preloaded() bool { return !strings.HasSuffix(r.ID, "*") }

// Matches reports whether r applies to stream.
func (r StreamRule) Matches(stream string) bool {
	if p, ok := strings.CutSuffix(r.ID, "*"); ok {
		return strings.HasPrefix(stream, p)
	}
	return r.ID == stream
}

// SetStreams replaces the stream rules (at start and on a config reload).
// Preloaded streams new to the list are placed within a second; those no
// longer in it are let go unless a publisher has taken them.
func (c *Core) SetStreams(rules []StreamRule) {
	rules = append([]StreamRule(nil), rules...)
	c.rules.Store(&rules)
	c.startPreloader()
	select {
	case c.preloadKick <- struct{}{}:
	default:
	}
}

// Rule is the first rule that matches stream, and whether there is one.
func (c *Core) Rule(stream string) (StreamRule, bool) {
	if p := c.rules.Load(); p != nil {
		for _, r := range *p {
			if r.Matches(stream) {
				return r, true
			}
		}
	}
	return StreamRule{}, false
}

// preloadWanted reports whether a rule names stream exactly: it is preloaded
// (whether or not an earlier pattern's rules are the ones that apply).
func (c *Core) preloadWanted(stream string) bool {
	if p := c.rules.Load(); p != nil {
		for _, r := range *p {
			if r.Preloaded() && r.ID == stream {
				return true
			}
		}
	}
	return false
}

// purposeOf is the node purpose that carries stream.
func (c *Core) purposeOf(stream string) string {
	if r, ok := c.Rule(stream); ok && r.Purpose != "" {
		return r.Purpose
	}
	return c.cfg.Purpose
}

// tagsOf are the agent tags stream's rule requires, or nil.
func (c *Core) tagsOf(stream string) map[string]string {
	if r, ok := c.Rule(stream); ok {
		return r.Tags
	}
	return nil
}

// preloadEvery is how often the preloader checks that its streams are placed.
const preloadEvery = time.Second

// startPreloader starts the goroutine that keeps preloaded streams placed,
// once; it ends with the core.
func (c *Core) startPreloader() {
	c.preloadOnce.Do(func() {
		c.goOwned(func() {
			t := time.NewTicker(preloadEvery)
			defer t.Stop()
			for {
				c.reconcilePreloads()
				select {
				case <-c.ctx.Done():
					c.releasePreloads(nil)
					return
				case <-t.C:
				case <-c.preloadKick:
				}
			}
		})
	})
}

// reconcilePreloads places every preloaded stream that is not placed, lets go of
// those no longer configured, and re-places one whose agent lost it.
func (c *Core) reconcilePreloads() {
	want := map[string]bool{}
	if p := c.rules.Load(); p != nil {
		for _, r := range *p {
			if r.Preloaded() {
				want[r.ID] = true
			}
		}
	}
	c.releasePreloads(want)
	if c.Draining() {
		return
	}
	for stream := range want {
		if c.ctx.Err() != nil {
			return
		}
		c.keepPlaced(stream)
	}
}

// keepPlaced makes sure a preloaded stream is on an agent: held by this
// gateway's preload session, published through it, or live elsewhere (another
// gateway's publisher or preload).
func (c *Core) keepPlaced(stream string) {
	c.preloadMu.Lock() // a publisher of the stream waits for this to end
	defer c.preloadMu.Unlock()
	c.mu.Lock()
	_, published := c.pubs[stream]
	pl, held := c.preloads[stream]
	c.mu.Unlock()
	if published {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	avoid := ""
	if held {
		if _, err := c.agents.Stream(ctx, pl.API, stream); err == nil {
			return
		} else if !isAgentStatus(err, http.StatusNotFound) {
			avoid = pl.Agent // unreachable: lost, or on its way out
		}
		c.mu.Lock()
		if c.preloads[stream] == pl {
			delete(c.preloads, stream)
		}
		c.mu.Unlock()
		c.log.Warn("gateway: a preloaded stream lost its agent; placing it again", "stream", stream, "agent", pl.Agent)
		go c.closeAgentSession(pl)
	}
	if _, _, err := c.lookup(ctx, stream); err == nil {
		return // live on an agent already
	}
	np, err := c.place(ctx, placeRequest{stream: stream, protocol: "preload", avoid: avoid})
	if err != nil {
		c.log.Warn("gateway: a preloaded stream could not be placed; trying again", "stream", stream, "err", err)
		return
	}
	c.mu.Lock()
	_, published = c.pubs[stream]
	if !published {
		c.preloads[stream] = np
	}
	c.mu.Unlock()
	if published {
		go c.closeAgentSession(np) // a publisher came meanwhile and holds it
		return
	}
	c.log.Info("gateway: preloaded stream placed", "stream", stream, "agent", np.Agent, "node", np.Node)
}

// releasePreloads closes the preload sessions of streams not in keep (nil:
// all of them).
func (c *Core) releasePreloads(keep map[string]bool) {
	c.mu.Lock()
	var gone []placement
	for stream, pl := range c.preloads {
		if !keep[stream] {
			gone = append(gone, pl)
			delete(c.preloads, stream)
		}
	}
	c.mu.Unlock()
	for _, pl := range gone {
		c.closeAgentSession(pl)
	}
}

// takePreload hands a preloaded stream's placement to its publisher: the
// agent keeps the stream on its node and the publish session replaces the
// preload's (the same gateway publishes it). ok is false when the stream is
// not preloaded here.
func (c *Core) takePreload(ctx context.Context, stream string) (placement, bool, error) {
	if !c.preloadWanted(stream) {
		return placement{}, false, nil
	}
	c.preloadMu.Lock() // wait for a placement under way
	defer c.preloadMu.Unlock()
	c.mu.Lock()
	pl, ok := c.preloads[stream]
	delete(c.preloads, stream)
	c.mu.Unlock()
	if !ok {
		return placement{}, false, nil
	}
	resp, err := c.agents.Open(ctx, pl.API, c.openRequest(stream, wire.KindPublish))
	if err != nil {
		// Closed before the publisher looks the stream up, or it would find
		// the preload and be refused.
		c.closeAgentSession(pl)
		return placement{}, true, err
	}
	return placementOf(Agent{ID: pl.Agent, API: pl.API}, resp), true, nil
}

// preloadViews are the preloaded streams this gateway holds, for LocalStreams.
func (c *Core) preloadViews() map[string]placement {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.preloads)
}

// withTags keeps the candidates that carry every tag in want.
func withTags(cands []Candidate, want map[string]string) []Candidate {
	out := make([]Candidate, 0, len(cands))
	for _, cand := range cands {
		ok := true
		for k, v := range want {
			if got, _ := cand.Tags.Get(k); got != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, cand)
		}
	}
	return out
}
