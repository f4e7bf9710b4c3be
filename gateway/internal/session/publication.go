package session

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
)

// Publication is a stream published through this gateway: a Source's tracks
// carried to the stream's node, re-attaching when the node is replaced.
type Publication struct {
	core     *Core
	stream   string
	protocol string // "whip", "moq"
	client   string
	req      placeRequest // how it was placed, to place it again
	started  time.Time
	link     *nodeLink

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	mu     sync.Mutex
	src    Source // nil until start
	tracks []medialink.Track
	expect int // tracks the source will announce in all
	pli    [medialink.MaxTracks]time.Time

	packets, bytes atomic.Uint64
	rate           rateMeter
}

// PublishRequest is what a protocol knows of a new publisher.
type PublishRequest struct {
	Stream   string
	Protocol string            // "whip", "moq"
	Client   string            // the client's address
	Headers  map[string]string // request headers the route policy may see
	Tracks   int               // tracks the source will announce
}

// Publish reserves the stream on this gateway, makes sure it is live nowhere in
// the cluster and places it. The protocol then answers its client and calls
// start, or abort if it cannot.
func (c *Core) Publish(ctx context.Context, req PublishRequest) (*Publication, error) {
	if c.Draining() {
		return nil, errDraining
	}
	p := &Publication{core: c, stream: req.Stream, protocol: req.Protocol, client: req.Client, expect: req.Tracks, started: time.Now(),
		req: placeRequest{stream: req.Stream, protocol: req.Protocol, client: req.Client, headers: req.Headers}}
	p.ctx, p.cancel = context.WithCancel(c.ctx)
	p.link = &nodeLink{core: c, stream: req.Stream, role: medialink.RolePublish,
		onPacket: p.onFeedback, onAttach: p.onAttach, relocate: p.relocate}
	c.mu.Lock()
	if _, busy := c.pubs[req.Stream]; busy {
		c.mu.Unlock()
		p.cancel()
		return nil, errBusy(req.Stream, "is being published through this gateway")
	}
	c.pubs[req.Stream] = p
	c.mu.Unlock()
	pl, preloaded, err := c.takePreload(ctx, req.Stream)
	if err != nil {
		c.log.Warn("gateway: the preloaded stream's agent refused its publisher; placing it anew", "stream", req.Stream, "err", err)
	}
	if !preloaded || err != nil {
		if a, _, err := c.lookup(ctx, req.Stream); err == nil {
			p.Abort()
			return nil, errBusy(req.Stream, "is live on agent "+a.ID)
		}
		pl, err = c.place(ctx, p.req)
	}
	if err != nil {
		p.Abort()
		return nil, err
	}
	p.link.mu.Lock()
	p.link.place = pl
	p.link.mu.Unlock()
	return p, nil
}

// relocate finds the stream a node after its link was lost: the same agent's
// (possibly new) node, or another agent if that one is gone.
func (p *Publication) relocate(ctx context.Context, old placement) (placement, error) {
	resp, err := p.core.agents.Open(ctx, old.API, p.core.openRequest(p.stream, wire.KindPublish))
	if err == nil {
		return placementOf(Agent{ID: old.Agent, API: old.API}, resp), nil
	}
	req := p.req
	req.avoid = old.Agent
	return p.core.place(ctx, req)
}

// Start begins carrying src's media to the node.
func (p *Publication) Start(src Source) {
	p.mu.Lock()
	p.src = src
	p.mu.Unlock()
	p.core.m.publishers.Inc()
	pl := p.link.placement()
	p.core.emit(webhook.Event{Type: webhook.StreamStarted, Stream: p.stream, Protocol: p.protocol, Agent: pl.Agent, Node: pl.Node})
	p.core.goOwned(func() { _ = p.link.run(p.ctx) })
}

// Abort gives the stream up before it started.
func (p *Publication) Abort() {
	p.cancel()
	p.core.mu.Lock()
	if p.core.pubs[p.stream] == p {
		delete(p.core.pubs, p.stream)
	}
	p.core.mu.Unlock()
	p.core.closeAgentSession(p.link.placement())
}

// End stops the publication: the media link closes with the "ended" code, so
// the node ends the stream for its viewers, and the agent session closes.
func (p *Publication) End() {
	p.once.Do(func() {
		p.mu.Lock()
		started := p.src != nil
		p.mu.Unlock()
		pl := p.link.placement()
		p.link.drop(closeEnded, "stream ended")
		p.Abort()
		if started {
			p.core.m.publishers.Dec()
			p.core.emit(webhook.Event{Type: webhook.StreamEnded, Stream: p.stream, Protocol: p.protocol, Agent: pl.Agent, Node: pl.Node})
		}
	})
}

// AddTrack announces tracks of the source to the node. Tracks given in one
// call are announced together, so a viewer joining meanwhile sees all of them.
func (p *Publication) AddTrack(ts ...medialink.Track) {
	p.mu.Lock()
	p.tracks = append(p.tracks, ts...)
	msg := p.tracksMsgLocked()
	p.mu.Unlock()
	p.link.writeControl(msg)
}

func (p *Publication) tracksMsgLocked() *medialink.Msg {
	return &medialink.Msg{T: medialink.MsgTracks, Tracks: append([]medialink.Track(nil), p.tracks...), Expect: p.expect}
}

// WriteRTP sends one RTP packet of a track to the node. framed[0] is the link's
// header byte, written here, and framed[1:] the packet, so a source reads
// packets into framed[1:] and nothing is copied.
func (p *Publication) WriteRTP(track uint8, framed []byte) {
	framed[0] = medialink.Header(medialink.TypeRTP, track)
	n := len(framed) - 1
	p.packets.Add(1)
	p.bytes.Add(uint64(n))
	p.core.m.packetsIn.Inc()
	p.core.m.bytesIn.Add(n)
	p.link.sendRTP(framed)
}

// onAttach announces the tracks to a new node and asks for keyframes, since the
// node's viewers have a gap to fill.
func (p *Publication) onAttach() {
	p.mu.Lock()
	msg := p.tracksMsgLocked()
	p.mu.Unlock()
	if len(msg.Tracks) > 0 {
		p.link.writeControl(msg)
	}
	for i := range medialink.MaxTracks {
		p.keyframe(uint8(i), true)
	}
}

// onFeedback serves the node's keyframe requests.
func (p *Publication) onFeedback(pkt []byte) {
	typ, track, _, err := medialink.ParsePacket(pkt)
	if err == nil && typ == medialink.TypePLI {
		p.keyframe(track, false)
	}
}

// keyframe asks the source for a keyframe on a video track, at most every 500 ms
// unless forced (after a re-attach).
func (p *Publication) keyframe(track uint8, force bool) {
	if int(track) >= medialink.MaxTracks {
		return
	}
	p.mu.Lock()
	video := false
	for _, t := range p.tracks {
		video = video || t.Index == track && t.Kind == "video"
	}
	now := time.Now()
	if !video || p.src == nil || !force && now.Sub(p.pli[track]) < 500*time.Millisecond {
		p.mu.Unlock()
		return
	}
	p.pli[track] = now
	src := p.src
	p.mu.Unlock()
	src.RequestKeyframe(track)
	p.core.m.keyframeRequests.Inc()
}
