package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
)

// subscription is a gateway's one subscription to a stream's node, shared by every
// WHEP viewer of the stream on this gateway: each track becomes one pion local
// track bound to all viewers' PeerConnections.
type subscription struct {
	g      *Gateway
	stream string
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	place   placement
	link    *quic.Conn
	viewers map[*viewer]struct{}
	info    []medialink.Track
	expect  int
	local   [medialink.MaxTracks]*webrtc.TrackLocalStaticRTP
	queue   [medialink.MaxTracks]chan []byte // RTP for the track's fan-out goroutine
	// pending counts a track's packets queued or being written by its fan-out
	// goroutine; the media goroutine writes inline only when it is zero, so a
	// track's packets leave in the order they came.
	pending [medialink.MaxTracks]atomic.Int32
	ready   chan struct{} // closed once every expected track is known
	isReady bool
	ended   bool
	pli     [medialink.MaxTracks]time.Time

	// receive side, touched only by the packet loop (and its uni-stream goroutines,
	// hence the lock)
	seqMu   sync.Mutex
	lastSeq [medialink.MaxTracks]uint16
	seen    [medialink.MaxTracks]bool

	packets, bytes atomic.Uint64
	rate           rateMeter
}

// viewer is one WHEP session.
type viewer struct {
	g       *Gateway
	sub     *subscription
	stream  string
	res     string
	etagV   string
	pcv     *webrtc.PeerConnection
	client  string
	started time.Time
	once    sync.Once
}

func (v *viewer) resource() string           { return v.res }
func (v *viewer) etag() string               { return v.etagV }
func (v *viewer) pc() *webrtc.PeerConnection { return v.pcv }
func (v *viewer) streamID() string           { return v.stream }
func (v *viewer) kind() string               { return wire.KindPlay }

func (v *viewer) close(reason string) {
	v.once.Do(func() {
		v.g.log.Info("whep: session closed", "stream", v.stream, "reason", reason)
		_ = v.pcv.Close()
		v.sub.removeViewer(v)
	})
}

// locate finds the agent carrying a stream and opens a play session there.
func (g *Gateway) locate(ctx context.Context, stream string) (placement, error) {
	l, cands, version := g.candidates("")
	agents := l.agents
	in := &RouteInput{StreamID: stream, Op: wire.KindPlay, Protocol: "whep", Purpose: g.cfg.Purpose, Candidates: cands, CandidatesVersion: version}
	// Ask in the route policy's order first: with a deterministic policy the
	// stream is usually on the first agent. Then everyone else.
	order := make([]agentView, 0, len(agents))
	if out, err := g.policy.Route(ctx, in); err == nil {
		for _, id := range out.Agents {
			for _, a := range agents {
				if a.ID == id {
					order = append(order, a)
				}
			}
		}
	}
	for _, a := range agents {
		seen := false
		for _, o := range order {
			seen = seen || o.ID == a.ID
		}
		if !seen {
			order = append(order, a)
		}
	}
	for _, a := range order {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := g.agents.Open(qctx, a.API, wire.OpenRequest{Stream: stream, Purpose: g.cfg.Purpose, Kind: wire.KindPlay, Gateway: g.cfg.ID})
		cancel()
		if err != nil {
			if !isAgentStatus(err, http.StatusNotFound) {
				g.log.Debug("gateway: locate", "agent", a.ID, "stream", stream, "err", err)
			}
			continue
		}
		return placement{Agent: a.ID, API: a.API, Session: resp.Session, Node: resp.Node, Media: resp.Media, Epoch: resp.Epoch}, nil
	}
	return placement{}, errNotLive
}

// subscribe returns the stream's shared subscription, opening it if needed, once
// its tracks are known.
func (g *Gateway) subscribe(ctx context.Context, stream string) (*subscription, error) {
	g.mu.Lock()
	s := g.subs[stream]
	g.mu.Unlock()
	if s == nil {
		pl, err := g.locate(ctx, stream)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		if s = g.subs[stream]; s == nil {
			s = &subscription{g: g, stream: stream, place: pl, viewers: map[*viewer]struct{}{}, ready: make(chan struct{})}
			s.ctx, s.cancel = context.WithCancel(g.ctx)
			g.subs[stream] = s
			g.goOwned(s.run)
		} else {
			go g.closeAgentSession(pl) // lost a race with another viewer
		}
		g.mu.Unlock()
	}
	wait, cancel := context.WithTimeout(ctx, g.cfg.TrackWait)
	defer cancel()
	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return nil, errNotLive
	case <-wait.Done():
		s.mu.Lock()
		n := len(s.info)
		s.mu.Unlock()
		if n == 0 {
			return nil, fmt.Errorf("%w: no tracks announced within %s", errNotLive, g.cfg.TrackWait)
		}
		// Play what is known; a track announced later is not added to this viewer.
	}
	return s, nil
}

// run keeps the subscription's media link up, re-attaching when the node is
// replaced, until the stream ends or the last viewer leaves.
func (s *subscription) run() {
	defer s.end()
	lost := time.Time{}
	backoff := 20 * time.Millisecond
	for s.ctx.Err() == nil {
		err := s.attach()
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if ended {
			return
		}
		if lost.IsZero() {
			lost = time.Now()
			s.g.log.Warn("whep: media link lost, re-attaching", "stream", s.stream, "err", err)
			s.g.m.reattaches.Inc()
		}
		if time.Since(lost) > 15*time.Second {
			s.g.log.Warn("whep: stream did not come back", "stream", s.stream)
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		pl, err := s.g.locate(ctx, s.stream)
		cancel()
		if err == nil {
			s.mu.Lock()
			old := s.place
			s.place = pl
			s.mu.Unlock()
			go s.g.closeAgentSession(old)
			lost = time.Time{}
			backoff = 20 * time.Millisecond
		}
	}
}

func (s *subscription) attach() error {
	s.mu.Lock()
	pl := s.place
	s.mu.Unlock()
	link, ctrl, path, err := s.g.dialNode(s.ctx, pl.Media, s.stream, medialink.RoleSubscribe, s.onPacket)
	if err != nil {
		return err
	}
	defer path.Close()
	s.g.watchAgent(pl.API)
	s.mu.Lock()
	s.link = link
	s.mu.Unlock()
	go func() {
		for {
			m, err := medialink.ReadMsg(ctrl)
			if err != nil {
				return
			}
			switch m.T {
			case medialink.MsgTracks:
				s.setTracks(m.Tracks, m.Expect)
			case medialink.MsgGone:
				s.mu.Lock()
				s.ended = true
				s.mu.Unlock()
			}
		}
	}()
	// A new link means a gap: ask for a keyframe on every video track.
	s.keyframeAll()
	err = medialink.ReadPackets(s.ctx, link, s.onPacket) // packets too large for the path
	s.mu.Lock()
	if s.link == link {
		s.link = nil
	}
	s.mu.Unlock()
	return err
}

func (s *subscription) setTracks(tracks []medialink.Track, expect int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tracks {
		if s.local[t.Index] != nil {
			continue
		}
		lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
			MimeType: t.MimeType, ClockRate: t.ClockRate, Channels: t.Channels, SDPFmtpLine: t.SDPFmtpLine,
		}, t.Kind, s.stream)
		if err != nil {
			s.g.log.Warn("whep: track", "stream", s.stream, "err", err)
			continue
		}
		s.local[t.Index] = lt
		q := make(chan []byte, trackQueue)
		s.queue[t.Index] = q
		s.g.goOwned(func() { s.fanOut(lt, q, &s.pending[t.Index]) })
		s.info = append(s.info, t)
	}
	s.expect = expect
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
// writing to N viewers costs ~25 µs × N (README, "Media path"): at 16 viewers ~0.4
// ms per packet, a small delay for the links served behind it.
const inlineViewers = 16

// onPacket takes one framed packet from the link and writes its RTP to the
// viewers. It runs on the gateway's media endpoint goroutine, which serves every
// link of the gateway: it writes inline only while the subscription is small
// (inlineViewers) and the track's goroutine has nothing pending (so packets stay
// in order), and otherwise queues the packet for the track's fan-out goroutine,
// as a publisher's tracks fan out in pion.
func (s *subscription) onPacket(p []byte) {
	typ, track, payload, err := medialink.ParsePacket(p)
	if err != nil || typ != medialink.TypeRTP {
		return
	}
	s.mu.Lock()
	q, lt, n := s.queue[track], s.local[track], len(s.viewers)
	s.mu.Unlock()
	if q == nil {
		return
	}
	s.checkGap(track, binary.BigEndian.Uint16(payload[2:4]))
	if n <= inlineViewers && s.pending[track].Load() == 0 {
		s.write(lt, payload)
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

// fanOut writes a track's RTP to every viewer until the subscription ends.
func (s *subscription) fanOut(lt *webrtc.TrackLocalStaticRTP, q chan []byte, pending *atomic.Int32) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case payload := <-q:
			s.write(lt, payload)
			pending.Add(-1)
		}
	}
}

func (s *subscription) write(lt *webrtc.TrackLocalStaticRTP, payload []byte) {
	var pkt rtp.Packet
	if err := pkt.Unmarshal(payload); err != nil {
		return
	}
	// Header extension ids are the publisher's negotiation, not the viewers'.
	pkt.Header.Extension = false
	pkt.Header.Extensions = nil
	s.packets.Add(1)
	s.bytes.Add(uint64(len(payload)))
	if err := lt.WriteRTP(&pkt); err == nil {
		s.mu.Lock()
		n := len(s.viewers)
		s.mu.Unlock()
		s.g.m.packetsOut.Add(n)
		s.g.m.bytesOut.Add(n * len(payload))
	}
}

// checkGap NACKs sequence numbers the link lost, once; the node answers from its
// history. Late and retransmitted packets pass through untouched.
func (s *subscription) checkGap(track byte, seq uint16) {
	s.seqMu.Lock()
	last, seen := s.lastSeq[track], s.seen[track]
	diff := seq - last
	if !seen || diff < 0x8000 {
		s.lastSeq[track], s.seen[track] = seq, true
	}
	s.seqMu.Unlock()
	if !seen || diff <= 1 || diff >= 0x8000 || diff > 64 {
		return
	}
	nack := make([]byte, 1, 1+2*int(diff-1))
	nack[0] = medialink.Header(medialink.TypeNACK, track)
	for m := last + 1; m != seq; m++ {
		nack = binary.BigEndian.AppendUint16(nack, m)
	}
	s.mu.Lock()
	link := s.link
	s.mu.Unlock()
	if link != nil {
		_ = link.SendDatagram(nack)
		s.g.m.nacks.Inc()
	}
}

// keyframe asks the publisher for a keyframe on a track, at most every 500 ms.
func (s *subscription) keyframe(track byte) {
	s.mu.Lock()
	link := s.link
	now := time.Now()
	if link == nil || int(track) >= medialink.MaxTracks || now.Sub(s.pli[track]) < 500*time.Millisecond {
		s.mu.Unlock()
		return
	}
	s.pli[track] = now
	s.mu.Unlock()
	_ = link.SendDatagram([]byte{medialink.Header(medialink.TypePLI, track)})
}

func (s *subscription) keyframeAll() {
	s.mu.Lock()
	var video []byte
	for _, t := range s.info {
		if t.Kind == "video" {
			video = append(video, t.Index)
		}
	}
	s.mu.Unlock()
	for _, i := range video {
		s.keyframe(i)
	}
}

// addViewer answers a WHEP offer with the stream's tracks.
func (s *subscription) addViewer(ctx context.Context, v *viewer, offer string) (string, error) {
	pc, err := s.g.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	v.pcv = pc
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		_ = pc.Close()
		return "", &httpError{status: http.StatusBadRequest, kind: "bad-sdp", title: "The SDP offer cannot be used", detail: err.Error()}
	}
	s.mu.Lock()
	type added struct {
		idx    byte
		sender *webrtc.RTPSender
	}
	var senders []added
	for _, t := range s.info {
		sender, err := pc.AddTrack(s.local[t.Index])
		if err != nil {
			s.mu.Unlock()
			_ = pc.Close()
			return "", &httpError{status: http.StatusBadRequest, kind: "bad-sdp", title: "The offer cannot receive the stream's tracks", detail: err.Error()}
		}
		senders = append(senders, added{t.Index, sender})
	}
	s.mu.Unlock()
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.keyframeAll()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.g.endSession(v, "peer connection "+st.String())
		}
	})
	answer, err := completeAnswer(ctx, pc)
	if err != nil {
		_ = pc.Close()
		return "", err
	}
	for _, a := range senders {
		go s.readFeedback(a.idx, a.sender)
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		_ = pc.Close()
		return "", errNotLive
	}
	s.viewers[v] = struct{}{}
	s.mu.Unlock()
	s.g.m.viewers.Inc()
	return answer, nil
}

// readFeedback turns a viewer's keyframe requests into one upstream request.
// pion's NACK responder answers the viewer's NACKs from the gateway's own buffer.
func (s *subscription) readFeedback(track byte, sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.keyframe(track)
			}
		}
	}
}

func (s *subscription) removeViewer(v *viewer) {
	s.mu.Lock()
	_, had := s.viewers[v]
	delete(s.viewers, v)
	last := len(s.viewers) == 0
	s.mu.Unlock()
	if had {
		s.g.m.viewers.Dec()
	}
	if last {
		s.cancel()
	}
}

// end closes the subscription and every viewer still on it.
func (s *subscription) end() {
	s.cancel()
	s.g.mu.Lock()
	if s.g.subs[s.stream] == s {
		delete(s.g.subs, s.stream)
	}
	s.g.mu.Unlock()
	s.mu.Lock()
	vs := make([]*viewer, 0, len(s.viewers))
	for v := range s.viewers {
		vs = append(vs, v)
	}
	link, pl := s.link, s.place
	s.mu.Unlock()
	for _, v := range vs {
		s.g.endSession(v, "stream ended")
	}
	if link != nil {
		_ = link.CloseWithError(0, "")
	}
	s.g.closeAgentSession(pl)
}
