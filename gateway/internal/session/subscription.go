package session

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/internal/medialink"
)

// Subscription is a gateway's one downlink of a stream, shared by every local
// viewer of every protocol: each packet from the node is parsed once and handed
// to each protocol's Sink.
type Subscription struct {
	core   *Core
	stream string
	link   *nodeLink
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	members int // viewers, and requests on their way to becoming viewers
	viewers int // viewers receiving media
	sinks   map[string]Sink
	sinkSeq []Sink // the sinks in the order they came; only appended to
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

// Subscribe joins the stream's shared subscription, opening it if needed, and
// waits until its tracks are known. The caller must call leave when its viewer
// is gone (or never came).
func (c *Core) Subscribe(ctx context.Context, stream string) (*Subscription, error) {
	if c.Draining() {
		return nil, errDraining
	}
	limit := 0
	if r, ok := c.Rule(stream); ok {
		limit = r.MaxViewers
	}
	full := &Error{Status: http.StatusForbidden, Kind: "viewer-limit", Title: "The stream has all the viewers it may have",
		Detail: fmt.Sprintf("stream %s allows %d viewers on this gateway (streams[].limits.maxViewers)", stream, limit)}
	c.mu.Lock()
	s := c.subs[stream]
	if s != nil && !s.join(limit) {
		c.mu.Unlock()
		return nil, full
	}
	c.mu.Unlock()
	if s == nil {
		pl, err := c.openPlay(ctx, stream)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if s = c.subs[stream]; s == nil {
			s = c.newSubscription(stream, pl)
			c.subs[stream] = s
			c.goOwned(s.run)
		} else {
			go c.closeAgentSession(pl) // another viewer opened it first
		}
		joined := s.join(limit)
		c.mu.Unlock()
		if !joined {
			return nil, full
		}
	}
	wait, cancel := context.WithTimeout(ctx, c.cfg.TrackWait)
	defer cancel()
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		s.Leave(false)
		return nil, ErrNotLive
	case <-wait.Done():
		s.mu.Lock()
		n := len(s.info)
		s.mu.Unlock()
		if n == 0 {
			s.Leave(false)
			return nil, errNotLiveWithin(c.cfg.TrackWait)
		}
		// Play what is known; a track announced later is not added to this viewer.
	}
	return s, nil
}

// join counts one more member unless limit (> 0) members are there: the
// check and the count under one lock, so viewers arriving together cannot
// all pass a limit that only the first of them fit under.
func (s *Subscription) join(limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.members >= limit {
		return false
	}
	s.members++
	return true
}

func (c *Core) newSubscription(stream string, pl placement) *Subscription {
	s := &Subscription{core: c, stream: stream, sinks: map[string]Sink{}, ready: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	s.link = &nodeLink{core: c, stream: stream, role: medialink.RoleSubscribe, place: pl, giveUp: 15 * time.Second,
		onPacket: s.onPacket, onAttach: s.KeyframeAll, onTracks: s.setTracks,
		relocate: func(ctx context.Context, _ placement) (placement, error) { return c.openPlay(ctx, stream) }}
	return s
}

// run keeps the downlink up until the stream ends or the last viewer leaves.
func (s *Subscription) run() {
	defer s.end()
	_ = s.link.run(s.ctx)
}

// Sink returns the subscription's sink for a protocol, making it with mk (and
// giving it the known tracks) the first time.
//
// A sink made once the subscription has ended is ended at once: end has
// taken its list of sinks already, and a sink may own goroutines (the WHEP
// fan-out's workers).
func (s *Subscription) Sink(protocol string, mk func() Sink) Sink {
	s.mu.Lock()
	k := s.sinks[protocol]
	made := k == nil
	if made {
		k = mk()
		for _, t := range s.info {
			k.AddTrack(t)
		}
		s.sinks[protocol] = k
		s.sinkSeq = append(s.sinkSeq, k)
	}
	ended := s.ctx.Err() != nil
	s.mu.Unlock()
	if made && ended {
		k.End("stream ended")
	}
	return k
}

// Tracks lists the stream's known tracks.
func (s *Subscription) Tracks() []medialink.Track {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]medialink.Track(nil), s.info...)
}

// Viewing counts a member as a viewer receiving media. It reports false when the
// subscription has ended meanwhile.
func (s *Subscription) Viewing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.viewers++
	n := s.viewers
	s.core.m.viewers.Inc()
	s.core.emit(webhook.Event{Type: webhook.ViewerJoined, Stream: s.stream, Viewers: webhook.Count(n)})
	return true
}

// Leave removes a member (a viewer, if it was viewing); the last to leave ends
// the subscription.
func (s *Subscription) Leave(wasViewing bool) {
	s.mu.Lock()
	s.members--
	n := s.viewers
	if wasViewing {
		s.viewers--
		n = s.viewers
		s.core.m.viewers.Dec()
	}
	last := s.members <= 0
	s.mu.Unlock()
	if wasViewing {
		s.core.emit(webhook.Event{Type: webhook.ViewerLeft, Stream: s.stream, Viewers: webhook.Count(n)})
	}
	if last {
		s.cancel()
	}
}

func (s *Subscription) setTracks(tracks []medialink.Track, expect int) {
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
		s.core.goOwned(func() { s.fanOut(t.Index, q) })
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
// wake-up per packet (~10–20 µs, the largest cost of the path at small audiences),
// while the WHEP fan-out seals and batches a packet for ~2 µs a viewer
// (gateway/internal/fanout): at 128 viewers ~0.3 ms per packet, a small delay for
// the links served behind it.
const inlineViewers = 128

// onPacket takes one framed packet from the link and writes its RTP to the
// sinks. It runs on the gateway's media endpoint goroutine, which serves every
// link of the gateway: it writes inline only while the audience is small
// (inlineViewers) and the track's goroutine has nothing pending (so packets stay
// in order), and otherwise queues the packet for the track's fan-out goroutine.
func (s *Subscription) onPacket(p []byte) {
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
		s.core.m.nacks.Inc()
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
		s.core.m.dropped.Inc()
	}
}

// fanOut writes a track's queued RTP to the sinks until the subscription ends.
func (s *Subscription) fanOut(track uint8, q chan []byte) {
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

func (s *Subscription) write(track uint8, payload []byte) {
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
	s.core.m.packetsOut.Add(n)
	s.core.m.bytesOut.Add(n * len(payload))
}

// sinkList is the sinks; s.mu is held. The slice is only ever appended to, so
// a caller may range over it after unlocking, and nothing is allocated per
// packet.
func (s *Subscription) sinkList() []Sink { return s.sinkSeq }

// Keyframe asks the publisher for a keyframe on a track, at most every 500 ms.
func (s *Subscription) Keyframe(track uint8) {
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

func (s *Subscription) KeyframeAll() {
	for _, t := range s.Tracks() {
		if t.Kind == "video" {
			s.Keyframe(t.Index)
		}
	}
}

// end closes the subscription: its viewers' sessions, the link and the agent
// session.
func (s *Subscription) end() {
	s.cancel()
	s.core.mu.Lock()
	if s.core.subs[s.stream] == s {
		delete(s.core.subs, s.stream)
	}
	s.core.mu.Unlock()
	s.mu.Lock()
	sinks := s.sinkList()
	s.mu.Unlock()
	for _, k := range sinks {
		k.End("stream ended")
	}
	s.link.drop(closeEnded, "")
	s.core.closeAgentSession(s.link.placement())
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
