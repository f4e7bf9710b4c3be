package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
)

// The session core. A stream on this gateway has at most one publication — a
// Source (a WHIP publisher; a MoQ publisher next) feeding the stream's node over
// an uplink — and at most one subscription: a downlink from the node, fanned out
// to the Sinks of every protocol its local viewers use (WHEP today). Admission
// (admission.go), placement (placement.go) and the node link (nodelink.go) are
// the same for every protocol; a protocol adds only a Source or a Sink.

// Source is a protocol's publisher of one stream. The core calls it from its own
// goroutines; it must not block.
type Source interface {
	// RequestKeyframe asks the publisher for a keyframe on a video track.
	RequestKeyframe(track uint8)
}

// Sink is one protocol's viewers of a stream on this gateway, all of them: it
// gets each packet once and delivers it to every viewer. Its calls come from the
// subscription's goroutines, one track's packets in order; they must not block.
type Sink interface {
	// AddTrack adds a track of the stream before its first packet.
	AddTrack(t medialink.Track)
	// WriteRTP delivers one packet of a track and reports how many viewers it
	// went to.
	WriteRTP(track uint8, pkt *rtp.Packet) int
	// End ends every viewer's session: the stream is over.
	End(reason string)
}

// publication is a stream published through this gateway: a Source's tracks
// carried to the stream's node, re-attaching when the node is replaced.
type publication struct {
	g        *Gateway
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

// publishRequest is what a protocol knows of a new publisher.
type publishRequest struct {
	placeRequest
	expect int // tracks the source will announce
}

// publish reserves the stream on this gateway, makes sure it is live nowhere in
// the cluster and places it. The protocol then answers its client and calls
// start, or abort if it cannot.
func (g *Gateway) publish(ctx context.Context, req publishRequest) (*publication, error) {
	p := &publication{g: g, stream: req.stream, protocol: req.protocol, client: req.client, req: req.placeRequest, expect: req.expect, started: time.Now()}
	p.ctx, p.cancel = context.WithCancel(g.ctx)
	p.link = &nodeLink{g: g, stream: req.stream, role: medialink.RolePublish,
		onPacket: p.onFeedback, onAttach: p.onAttach, relocate: p.relocate}
	g.mu.Lock()
	if _, busy := g.pubs[req.stream]; busy {
		g.mu.Unlock()
		p.cancel()
		return nil, errBusy(req.stream, "is being published through this gateway")
	}
	g.pubs[req.stream] = p
	g.mu.Unlock()
	if a, _, err := g.lookup(ctx, req.stream); err == nil {
		p.abort()
		return nil, errBusy(req.stream, "is live on agent "+a.ID)
	}
	pl, err := g.place(ctx, req.placeRequest)
	if err != nil {
		p.abort()
		return nil, err
	}
	p.link.mu.Lock()
	p.link.place = pl
	p.link.mu.Unlock()
	return p, nil
}

// relocate finds the stream a node after its link was lost: the same agent's
// (possibly new) node, or another agent if that one is gone.
func (p *publication) relocate(ctx context.Context, old placement) (placement, error) {
	resp, err := p.g.agents.Open(ctx, old.API, p.g.openRequest(p.stream, wire.KindPublish))
	if err == nil {
		return placementOf(agentView{ID: old.Agent, API: old.API}, resp), nil
	}
	req := p.req
	req.avoid = old.Agent
	return p.g.place(ctx, req)
}

// start begins carrying src's media to the node.
func (p *publication) start(src Source) {
	p.mu.Lock()
	p.src = src
	p.mu.Unlock()
	p.g.m.publishers.Inc()
	p.g.goOwned(func() { _ = p.link.run(p.ctx) })
}

// abort gives the stream up before it started.
func (p *publication) abort() {
	p.cancel()
	p.g.mu.Lock()
	if p.g.pubs[p.stream] == p {
		delete(p.g.pubs, p.stream)
	}
	p.g.mu.Unlock()
	p.g.closeAgentSession(p.link.placement())
}

// end stops the publication: the media link closes with the "ended" code, so
// the node ends the stream for its viewers, and the agent session closes.
func (p *publication) end() {
	p.once.Do(func() {
		p.mu.Lock()
		started := p.src != nil
		p.mu.Unlock()
		p.link.drop(closeEnded, "stream ended")
		p.abort()
		if started {
			p.g.m.publishers.Dec()
		}
	})
}

// addTrack announces a track of the source to the node.
func (p *publication) addTrack(t medialink.Track) {
	p.mu.Lock()
	p.tracks = append(p.tracks, t)
	msg := p.tracksMsgLocked()
	p.mu.Unlock()
	p.link.writeControl(msg)
}

func (p *publication) tracksMsgLocked() *medialink.Msg {
	return &medialink.Msg{T: medialink.MsgTracks, Tracks: append([]medialink.Track(nil), p.tracks...), Expect: p.expect}
}

// writeRTP sends one RTP packet of a track to the node. framed[0] is the link's
// header byte, written here, and framed[1:] the packet, so a source reads
// packets into framed[1:] and nothing is copied.
func (p *publication) writeRTP(track uint8, framed []byte) {
	framed[0] = medialink.Header(medialink.TypeRTP, track)
	n := len(framed) - 1
	p.packets.Add(1)
	p.bytes.Add(uint64(n))
	p.g.m.packetsIn.Inc()
	p.g.m.bytesIn.Add(n)
	p.link.sendRTP(framed)
}

// onAttach announces the tracks to a new node and asks for keyframes, since the
// node's viewers have a gap to fill.
func (p *publication) onAttach() {
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
func (p *publication) onFeedback(pkt []byte) {
	typ, track, _, err := medialink.ParsePacket(pkt)
	if err == nil && typ == medialink.TypePLI {
		p.keyframe(track, false)
	}
}

// keyframe asks the source for a keyframe on a video track, at most every 500 ms
// unless forced (after a re-attach).
func (p *publication) keyframe(track uint8, force bool) {
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
	p.g.m.keyframeRequests.Inc()
}

// subscription is a gateway's one downlink of a stream, shared by every local
// viewer of every protocol: each packet from the node is parsed once and handed
// to each protocol's Sink.
type subscription struct {
	g      *Gateway
	stream string
	link   *nodeLink
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	members int // viewers, and requests on their way to becoming viewers
	viewers int // viewers receiving media
	sinks   map[string]Sink
	info    []medialink.Track
	ready   chan struct{} // closed once every expected track is known
	isReady bool
	queue   [medialink.MaxTracks]chan []byte // RTP for the track's fan-out goroutine
	// pending counts a track's packets queued or being written by its fan-out
	// goroutine; packets are written inline only when it is zero, so a track's
	// packets leave in the order they came.
	pending [medialink.MaxTracks]atomic.Int32
	pli     [medialink.MaxTracks]time.Time

	gaps gapDetector

	packets, bytes atomic.Uint64
	rate           rateMeter
}

// subscribe joins the stream's shared subscription, opening it if needed, and
// waits until its tracks are known. The caller must call leave when its viewer
// is gone (or never came).
func (g *Gateway) subscribe(ctx context.Context, stream string) (*subscription, error) {
	g.mu.Lock()
	s := g.subs[stream]
	if s != nil {
		s.mu.Lock()
		s.members++
		s.mu.Unlock()
	}
	g.mu.Unlock()
	if s == nil {
		pl, err := g.openPlay(ctx, stream)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		if s = g.subs[stream]; s == nil {
			s = g.newSubscription(stream, pl)
			g.subs[stream] = s
			g.goOwned(s.run)
		} else {
			go g.closeAgentSession(pl) // another viewer opened it first
		}
		s.mu.Lock()
		s.members++
		s.mu.Unlock()
		g.mu.Unlock()
	}
	wait, cancel := context.WithTimeout(ctx, g.cfg.TrackWait)
	defer cancel()
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		s.leave(false)
		return nil, errNotLive
	case <-wait.Done():
		s.mu.Lock()
		n := len(s.info)
		s.mu.Unlock()
		if n == 0 {
			s.leave(false)
			return nil, errNotLiveWithin(g.cfg.TrackWait)
		}
		// Play what is known; a track announced later is not added to this viewer.
	}
	return s, nil
}

func (g *Gateway) newSubscription(stream string, pl placement) *subscription {
	s := &subscription{g: g, stream: stream, sinks: map[string]Sink{}, ready: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(g.ctx)
	s.link = &nodeLink{g: g, stream: stream, role: medialink.RoleSubscribe, place: pl, giveUp: 15 * time.Second,
		onPacket: s.onPacket, onAttach: s.keyframeAll, onTracks: s.setTracks,
		relocate: func(ctx context.Context, _ placement) (placement, error) { return g.openPlay(ctx, stream) }}
	return s
}

// run keeps the downlink up until the stream ends or the last viewer leaves.
func (s *subscription) run() {
	defer s.end()
	_ = s.link.run(s.ctx)
}

// sink returns the subscription's sink for a protocol, making it with mk (and
// giving it the known tracks) the first time.
func (s *subscription) sink(protocol string, mk func() Sink) Sink {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.sinks[protocol]
	if k == nil {
		k = mk()
		for _, t := range s.info {
			k.AddTrack(t)
		}
		s.sinks[protocol] = k
	}
	return k
}

// tracks lists the stream's known tracks.
func (s *subscription) tracks() []medialink.Track {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]medialink.Track(nil), s.info...)
}

// viewing counts a member as a viewer receiving media. It reports false when the
// subscription has ended meanwhile.
func (s *subscription) viewing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.viewers++
	s.g.m.viewers.Inc()
	return true
}

// leave removes a member (a viewer, if it was viewing); the last to leave ends
// the subscription.
func (s *subscription) leave(wasViewing bool) {
	s.mu.Lock()
	s.members--
	if wasViewing {
		s.viewers--
		s.g.m.viewers.Dec()
	}
	last := s.members <= 0
	s.mu.Unlock()
	if last {
		s.cancel()
	}
}

func (s *subscription) setTracks(tracks []medialink.Track, expect int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tracks {
		if int(t.Index) >= medialink.MaxTracks || s.queue[t.Index] != nil {
			continue
		}
		for _, k := range s.sinks {
			k.AddTrack(t)
		}
		q := make(chan []byte, trackQueue)
		s.queue[t.Index] = q
		s.g.goOwned(func() { s.fanOut(t.Index, q) })
		s.info = append(s.info, t)
	}
	if !s.isReady && len(s.info) >= expect && len(s.info) > 0 {
		s.isReady = true
		close(s.ready)
	}
}

// trackQueue is how many packets a track's fan-out may fall behind before the
// newest are dropped (and NACKed by the viewers): ~2 s of video.
const trackQueue = 512

// inlineViewers is the most viewers a subscription may have for its packets to be
// written to them on the media endpoint's goroutine, as they arrive. Above it each
// track fans out on its own goroutine. A hand-off to a goroutine costs a thread
// wake-up per packet (the largest cost of the path at small audiences), while
// writing to N viewers costs ~25 µs × N (docs/performance.md): at 16 viewers ~0.4
// ms per packet, a small delay for the links served behind it.
const inlineViewers = 16

// onPacket takes one framed packet from the link and writes its RTP to the
// sinks. It runs on the gateway's media endpoint goroutine, which serves every
// link of the gateway: it writes inline only while the audience is small
// (inlineViewers) and the track's goroutine has nothing pending (so packets stay
// in order), and otherwise queues the packet for the track's fan-out goroutine.
func (s *subscription) onPacket(p []byte) {
	typ, track, payload, err := medialink.ParsePacket(p)
	if err != nil || typ != medialink.TypeRTP || len(payload) < 4 {
		return
	}
	s.mu.Lock()
	q, n := s.queue[track], s.viewers
	s.mu.Unlock()
	if q == nil {
		return
	}
	if nack := s.gaps.check(track, payload); nack != nil && s.link.sendFeedback(nack) {
		s.g.m.nacks.Inc()
	}
	if n <= inlineViewers && s.pending[track].Load() == 0 {
		s.write(track, payload)
		return
	}
	s.pending[track].Add(1)
	select {
	case q <- payload:
	default:
		s.pending[track].Add(-1)
		s.g.m.dropped.Inc()
	}
}

// fanOut writes a track's queued RTP to the sinks until the subscription ends.
func (s *subscription) fanOut(track uint8, q chan []byte) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case payload := <-q:
			s.write(track, payload)
			s.pending[track].Add(-1)
		}
	}
}

func (s *subscription) write(track uint8, payload []byte) {
	var pkt rtp.Packet
	if err := pkt.Unmarshal(payload); err != nil {
		return
	}
	// Header extension ids are the publisher's negotiation, not the viewers'.
	pkt.Header.Extension = false
	pkt.Header.Extensions = nil
	s.packets.Add(1)
	s.bytes.Add(uint64(len(payload)))
	s.mu.Lock()
	sinks := s.sinkList()
	s.mu.Unlock()
	n := 0
	for _, k := range sinks {
		n += k.WriteRTP(track, &pkt)
	}
	s.g.m.packetsOut.Add(n)
	s.g.m.bytesOut.Add(n * len(payload))
}

// sinkList is the sinks without allocating for the usual one; s.mu is held.
func (s *subscription) sinkList() []Sink {
	switch len(s.sinks) {
	case 0:
		return nil
	case 1:
		for _, k := range s.sinks {
			return []Sink{k}
		}
	}
	out := make([]Sink, 0, len(s.sinks))
	for _, k := range s.sinks {
		out = append(out, k)
	}
	return out
}

// keyframe asks the publisher for a keyframe on a track, at most every 500 ms.
func (s *subscription) keyframe(track uint8) {
	if int(track) >= medialink.MaxTracks {
		return
	}
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.pli[track]) < 500*time.Millisecond {
		s.mu.Unlock()
		return
	}
	s.pli[track] = now
	s.mu.Unlock()
	s.link.sendFeedback([]byte{medialink.Header(medialink.TypePLI, track)})
}

func (s *subscription) keyframeAll() {
	for _, t := range s.tracks() {
		if t.Kind == "video" {
			s.keyframe(t.Index)
		}
	}
}

// end closes the subscription: its viewers' sessions, the link and the agent
// session.
func (s *subscription) end() {
	s.cancel()
	s.g.mu.Lock()
	if s.g.subs[s.stream] == s {
		delete(s.g.subs, s.stream)
	}
	s.g.mu.Unlock()
	s.mu.Lock()
	sinks := s.sinkList()
	s.mu.Unlock()
	for _, k := range sinks {
		k.End("stream ended")
	}
	s.link.drop(closeEnded, "")
	s.g.closeAgentSession(s.link.placement())
}

// gapDetector NACKs sequence numbers the link lost, once; the node answers from
// its history. Late and retransmitted packets pass through untouched.
type gapDetector struct {
	mu      sync.Mutex
	lastSeq [medialink.MaxTracks]uint16
	seen    [medialink.MaxTracks]bool
}

// check returns the NACK packet for the gap before rtpPkt, or nil.
func (d *gapDetector) check(track uint8, rtpPkt []byte) []byte {
	seq := uint16(rtpPkt[2])<<8 | uint16(rtpPkt[3])
	d.mu.Lock()
	last, seen := d.lastSeq[track], d.seen[track]
	diff := seq - last
	if !seen || diff < 0x8000 {
		d.lastSeq[track], d.seen[track] = seq, true
	}
	d.mu.Unlock()
	if !seen || diff <= 1 || diff >= 0x8000 || diff > 64 {
		return nil
	}
	nack := make([]byte, 1, 1+2*int(diff-1))
	nack[0] = medialink.Header(medialink.TypeNACK, track)
	for m := last + 1; m != seq; m++ {
		nack = append(nack, byte(m>>8), byte(m))
	}
	return nack
}

// rateMeter turns a byte counter into a bit rate, sampled at most once a second.
type rateMeter struct {
	mu        sync.Mutex
	lastBytes uint64
	lastAt    time.Time
	bps       float64
}

func (r *rateMeter) sample(total uint64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.lastAt.IsZero() {
		r.lastAt, r.lastBytes = now, total
		return 0
	}
	if d := now.Sub(r.lastAt); d >= time.Second {
		r.bps = float64(total-r.lastBytes) * 8 / d.Seconds()
		r.lastAt, r.lastBytes = now, total
	}
	return r.bps
}
