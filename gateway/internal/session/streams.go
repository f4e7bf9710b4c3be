package session

import "time"

// StreamView is a stream as the gateway API shows it.
type StreamView struct {
	Stream    string         `json:"stream"`
	Agent     string         `json:"agent,omitempty"`
	Node      string         `json:"node,omitempty"`
	Publisher *PublisherView `json:"publisher,omitempty"`
	Viewers   int            `json:"viewers"`
	Bitrate   float64        `json:"bitrateBps"`
	Since     time.Time      `json:"since,omitzero"`
	// Preloaded says the stream is a configured preloaded stream held on its
	// node before any publisher (streams[] in the config).
	Preloaded bool `json:"preloaded,omitempty"`
}

// PublisherView is a stream's publisher in a StreamView.
type PublisherView struct {
	Gateway    string `json:"gateway"`
	Client     string `json:"client,omitempty"`
	Protocol   string `json:"protocol,omitempty"`
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
	Reattaches uint64 `json:"reattaches"`
}

// LocalStreams lists what this gateway publishes or plays, by stream id.
func (c *Core) LocalStreams() map[string]*StreamView {
	c.mu.Lock()
	pubs := make([]*Publication, 0, len(c.pubs))
	for _, p := range c.pubs {
		pubs = append(pubs, p)
	}
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	out := map[string]*StreamView{}
	get := func(id string) *StreamView {
		if out[id] == nil {
			out[id] = &StreamView{Stream: id}
		}
		return out[id]
	}
	for _, p := range pubs {
		pl := p.link.placement()
		if pl.Agent == "" {
			continue // not placed yet
		}
		v := get(p.stream)
		v.Agent, v.Node, v.Since = pl.Agent, pl.Node, p.started
		b := p.bytes.Load()
		v.Bitrate = p.rate.sample(b)
		v.Publisher = &PublisherView{Gateway: c.cfg.ID, Client: p.client, Protocol: p.protocol, Packets: p.packets.Load(), Bytes: b, Reattaches: p.link.reattaches.Load()}
	}
	for stream, pl := range c.preloadViews() {
		v := get(stream)
		v.Agent, v.Node, v.Preloaded = pl.Agent, pl.Node, true
	}
	for _, s := range subs {
		s.mu.Lock()
		n := s.viewers
		s.mu.Unlock()
		pl := s.link.placement()
		v := get(s.stream)
		v.Viewers += n
		if v.Agent == "" {
			v.Agent, v.Node = pl.Agent, pl.Node
		}
		if v.Bitrate == 0 {
			v.Bitrate = s.rate.sample(s.bytes.Load())
		}
	}
	return out
}

// AgentList is the alive agents of the cluster (shared: do not modify).
func (c *Core) AgentList() []Agent { return c.agentsView() }
