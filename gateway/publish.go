package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/abi"
)

// placement is where a stream's media goes: an agent and one of its nodes.
type placement struct {
	Agent   string
	API     string
	Session string
	Node    string
	Media   string
	Epoch   uint64
}

// publisher is one WHIP session: a browser's PeerConnection whose tracks the
// gateway forwards to the stream's node over the media link, re-attaching when the
// node is replaced.
type publisher struct {
	g        *Gateway
	stream   string
	res      string
	etagV    string
	pcv      *webrtc.PeerConnection
	expect   int
	client   string
	protocol string
	headers  map[string]string // passed to the route policy
	started  time.Time

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	mu     sync.Mutex
	place  placement
	link   *quic.Conn
	path   *medialink.Path
	ctrl   *quic.Stream
	tracks []medialink.Track
	ssrc   [medialink.MaxTracks]uint32
	pli    [medialink.MaxTracks]time.Time

	packets, bytes atomic.Uint64
	rate           rateMeter
	reattaches     atomic.Uint64
}

func (p *publisher) resource() string           { return p.res }
func (p *publisher) etag() string               { return p.etagV }
func (p *publisher) pc() *webrtc.PeerConnection { return p.pcv }
func (p *publisher) streamID() string           { return p.stream }
func (p *publisher) kind() string               { return wire.KindPublish }

// startPublish places the stream, answers the offer and starts forwarding. The
// caller has reserved the stream id in g.pubs.
func (g *Gateway) startPublish(ctx context.Context, p *publisher, offer string) (string, error) {
	pl, err := g.place(ctx, p.stream, p.client, p.protocol, "", p.headers)
	if err != nil {
		return "", err
	}
	p.place = pl

	pc, err := g.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		g.closeAgentSession(pl)
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	p.pcv = pc
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { p.forward(t, r) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			g.endSession(p, "peer connection "+s.String())
		}
	})
	answer, err := answerOffer(ctx, pc, offer)
	if err != nil {
		_ = pc.Close()
		g.closeAgentSession(pl)
		return "", err
	}
	g.goOwned(p.run)
	return answer, nil
}

// answerOffer applies a remote offer and returns the complete local answer, with
// its ICE candidates (gathering on one UDP port takes no network round trip).
func answerOffer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", &httpError{status: http.StatusBadRequest, kind: "bad-sdp", title: "The SDP offer cannot be used", detail: err.Error()}
	}
	return completeAnswer(ctx, pc)
}

func completeAnswer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", &httpError{status: http.StatusBadRequest, kind: "bad-sdp", title: "The SDP offer cannot be answered", detail: err.Error()}
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// forward reads one remote track and sends each RTP packet to the node.
func (p *publisher) forward(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	idx := -1
	for i, tr := range p.pcv.GetTransceivers() {
		if tr.Receiver() == r {
			idx = i
		}
	}
	if idx < 0 || idx >= medialink.MaxTracks {
		return
	}
	c := t.Codec()
	tk := medialink.Track{
		Index:       uint8(idx),
		Kind:        t.Kind().String(),
		MimeType:    c.MimeType,
		ClockRate:   c.ClockRate,
		Channels:    c.Channels,
		SDPFmtpLine: c.SDPFmtpLine,
		PayloadType: uint8(t.PayloadType()),
		SSRC:        uint32(t.SSRC()),
	}
	p.mu.Lock()
	p.tracks = append(p.tracks, tk)
	p.ssrc[idx] = tk.SSRC
	ctrl := p.ctrl
	msg := p.tracksMsg()
	p.mu.Unlock()
	if ctrl != nil {
		_ = medialink.WriteMsg(ctrl, msg)
	}
	p.g.log.Info("whip: track", "stream", p.stream, "index", idx, "codec", c.MimeType)

	hdr := medialink.Header(medialink.TypeRTP, byte(idx))
	buf := make([]byte, 1600)
	for {
		n, _, err := t.Read(buf[1:])
		if err != nil {
			return
		}
		buf[0] = hdr
		p.packets.Add(1)
		p.bytes.Add(uint64(n))
		p.g.m.packetsIn.Inc()
		p.g.m.bytesIn.Add(n)
		p.mu.Lock()
		link, path := p.link, p.path
		p.mu.Unlock()
		if link != nil {
			_ = path.SendRTP(link, buf[:n+1])
		}
	}
}

// tracksMsg is the tracks announcement; p.mu is held.
func (p *publisher) tracksMsg() *medialink.Msg {
	return &medialink.Msg{T: medialink.MsgTracks, Tracks: append([]medialink.Track(nil), p.tracks...), Expect: p.expect}
}

// run keeps the media link to the stream's node up until the session ends,
// re-attaching (and asking the browser for a keyframe) whenever it drops.
func (p *publisher) run() {
	backoff := 20 * time.Millisecond
	for p.ctx.Err() == nil {
		err := p.attach()
		if p.ctx.Err() != nil {
			return
		}
		p.g.log.Warn("whip: media link lost, re-attaching", "stream", p.stream, "node", p.place.Node, "err", err)
		p.reattaches.Add(1)
		p.g.m.reattaches.Inc()
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if err := p.replace(); err != nil {
			p.g.log.Warn("whip: re-placing stream failed", "stream", p.stream, "err", err)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 20 * time.Millisecond
	}
}

// replace asks the stream's agent for its (possibly new) node, and another agent if
// that one is gone.
func (p *publisher) replace() error {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	p.mu.Lock()
	old := p.place
	p.mu.Unlock()
	resp, err := p.g.agents.Open(ctx, old.API, wire.OpenRequest{Stream: p.stream, Purpose: p.g.cfg.Purpose, Kind: wire.KindPublish, Gateway: p.g.cfg.ID})
	var pl placement
	if err == nil {
		pl = placement{Agent: old.Agent, API: old.API, Session: resp.Session, Node: resp.Node, Media: resp.Media, Epoch: resp.Epoch}
	} else {
		pl, err = p.g.place(ctx, p.stream, p.client, p.protocol, old.Agent, p.headers)
		if err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.place = pl
	p.mu.Unlock()
	return nil
}

// attach dials the node, says hello, announces the tracks and then serves the
// node's feedback until the link drops.
func (p *publisher) attach() error {
	p.mu.Lock()
	pl := p.place
	p.mu.Unlock()
	link, ctrl, path, err := p.g.dialNode(p.ctx, pl.Media, p.stream, medialink.RolePublish, nil)
	if err != nil {
		return err
	}
	defer path.Close()
	p.g.watchAgent(pl.API)
	p.mu.Lock()
	p.link, p.path, p.ctrl = link, path, ctrl
	msg := p.tracksMsg()
	p.mu.Unlock()
	if len(msg.Tracks) > 0 {
		_ = medialink.WriteMsg(ctrl, msg)
	}
	for i := range medialink.MaxTracks {
		p.keyframe(byte(i), true)
	}
	err = medialink.ReadPackets(p.ctx, link, func(pkt []byte) {
		typ, track, _, err := medialink.ParsePacket(pkt)
		if err == nil && typ == medialink.TypePLI {
			p.keyframe(track, false)
		}
	})
	p.mu.Lock()
	if p.link == link {
		p.link, p.path, p.ctrl = nil, nil, nil
	}
	p.mu.Unlock()
	return err
}

// keyframe asks the browser for a keyframe on a video track, at most every 500 ms
// unless forced (after a re-attach).
func (p *publisher) keyframe(track byte, force bool) {
	if int(track) >= medialink.MaxTracks {
		return
	}
	p.mu.Lock()
	ssrc := p.ssrc[track]
	video := false
	for _, t := range p.tracks {
		if t.Index == track && t.Kind == "video" {
			video = true
		}
	}
	now := time.Now()
	if ssrc == 0 || !video || !force && now.Sub(p.pli[track]) < 500*time.Millisecond {
		p.mu.Unlock()
		return
	}
	p.pli[track] = now
	p.mu.Unlock()
	_ = p.pcv.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	p.g.m.keyframeRequests.Inc()
}

// close ends the WHIP session: the browser's connection, the media link (with the
// "ended" code, so the node ends the stream for its viewers) and the agent session.
func (p *publisher) close(reason string) {
	p.once.Do(func() {
		p.g.log.Info("whip: session closed", "stream", p.stream, "reason", reason)
		p.cancel()
		if p.pcv != nil {
			_ = p.pcv.Close()
		}
		p.mu.Lock()
		link, pl := p.link, p.place
		p.mu.Unlock()
		if link != nil {
			_ = link.CloseWithError(0, "stream ended")
		}
		p.g.closeAgentSession(pl)
	})
}

// dialNode opens a media link to a node, exchanges hellos and connects the link's
// media path; fn receives the RTP that arrives on the path (nil: none expected).
// The caller closes the path when the link is done.
func (g *Gateway) dialNode(ctx context.Context, media, stream, role string, fn func([]byte)) (*quic.Conn, *quic.Stream, *medialink.Path, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	link, err := g.media.Dial(dctx, media, g.id.ClientTLS())
	if err != nil {
		return nil, nil, nil, err
	}
	path := g.media.NewPath(fn)
	fail := func(err error) (*quic.Conn, *quic.Stream, *medialink.Path, error) {
		path.Close()
		_ = link.CloseWithError(1, "")
		return nil, nil, nil, err
	}
	ctrl, err := link.OpenStreamSync(dctx)
	if err != nil {
		return fail(err)
	}
	if err := medialink.WriteMsg(ctrl, &medialink.Msg{T: medialink.MsgHello, Stream: stream, Role: role, Gateway: g.cfg.ID, Path: path.ID(), Port: g.media.MediaPort()}); err != nil {
		return fail(err)
	}
	_ = ctrl.SetReadDeadline(time.Now().Add(3 * time.Second))
	reply, err := medialink.ReadMsg(ctrl)
	if err == nil && reply.T != medialink.MsgOK {
		err = fmt.Errorf("node refused the %s link: %s", role, reply.Error)
	}
	if err == nil {
		err = path.Connect(link, reply.Path, reply.Port, true)
	}
	if err != nil {
		return fail(err)
	}
	_ = ctrl.SetReadDeadline(time.Time{})
	return link, ctrl, path, nil
}

// place ranks agents for a stream with the route policy and opens a publish
// session on the first that accepts. avoid names an agent not to try (it failed).
func (g *Gateway) place(ctx context.Context, stream, client, protocol, avoid string, headers map[string]string) (placement, error) {
	l, cands, version := g.candidates(avoid)
	in := &RouteInput{StreamID: stream, Op: wire.KindPublish, Protocol: protocol, ClientAddr: client, Headers: abi.PairsOf(headers), Purpose: g.cfg.Purpose,
		Candidates: cands, CandidatesVersion: version}
	out, err := g.policy.Route(ctx, in)
	if err != nil {
		return placement{}, fmt.Errorf("route policy: %w", err)
	}
	if out.Reject != nil {
		return placement{}, &httpError{status: out.Reject.Status, kind: "route-rejected", title: "The route policy refused the stream", detail: out.Reject.Reason}
	}
	var errs []error
	for _, id := range out.Agents {
		a, ok := l.byID[id]
		if !ok || id == avoid {
			continue
		}
		resp, err := g.agents.Open(ctx, a.API, wire.OpenRequest{Stream: stream, Purpose: g.cfg.Purpose, Kind: wire.KindPublish, Gateway: g.cfg.ID})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			if isAgentStatus(err, http.StatusConflict) {
				return placement{}, &httpError{status: http.StatusConflict, kind: "stream-busy", title: "The stream already has a publisher", detail: err.Error()}
			}
			continue
		}
		return placement{Agent: id, API: a.API, Session: resp.Session, Node: resp.Node, Media: resp.Media, Epoch: resp.Epoch}, nil
	}
	if len(errs) == 0 {
		return placement{}, &httpError{status: http.StatusServiceUnavailable, kind: "no-agent", title: "No agent can carry the stream",
			detail: fmt.Sprintf("%d agents known, none serving purpose %q", len(l.agents), g.cfg.Purpose)}
	}
	return placement{}, &httpError{status: http.StatusServiceUnavailable, kind: "no-agent", title: "No agent accepted the stream", detail: errors.Join(errs...).Error()}
}

func (g *Gateway) closeAgentSession(pl placement) {
	if pl.Session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := g.agents.CloseSession(ctx, pl.API, pl.Session); err != nil && !isAgentStatus(err, http.StatusNotFound) {
		g.log.Warn("gateway: closing agent session failed", "agent", pl.Agent, "session", pl.Session, "err", err)
	}
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
