package whip

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/fanout"
	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
)

// whepSink is the WHEP side of a subscription: a fan-out group that seals
// and sends each packet to every connected viewer (gateway/internal/fanout),
// and per stream track a pion local track that only negotiates the viewers'
// senders (their SSRCs and payload types): nothing is written to it.
type whepSink struct {
	srv    *Server
	stream string
	group  *fanout.Group

	mu      sync.Mutex
	local   [medialink.MaxTracks]*webrtc.TrackLocalStaticRTP
	viewers map[*whepViewer]struct{}
}

func newWHEPSink(srv *Server, stream string) *whepSink {
	return &whepSink{srv: srv, stream: stream, viewers: map[*whepViewer]struct{}{},
		group: fanout.NewGroup(fanout.Config{Sockets: srv.port.socks, Log: srv.log})}
}

func (k *whepSink) AddTrack(t medialink.Track) {
	lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
		MimeType: t.MimeType, ClockRate: t.ClockRate, Channels: t.Channels, SDPFmtpLine: t.SDPFmtpLine,
	}, t.Kind, k.stream)
	if err != nil {
		k.srv.log.Warn("whep: track", "stream", k.stream, "err", err)
		return
	}
	k.mu.Lock()
	k.local[t.Index] = lt
	k.mu.Unlock()
	k.group.AddTrack(t.Index, t.ClockRate)
}

func (k *whepSink) WriteRTP(track uint8, pkt *rtp.Packet) int { return k.group.Write(track, pkt) }

func (k *whepSink) End(reason string) {
	k.mu.Lock()
	vs := make([]*whepViewer, 0, len(k.viewers))
	for v := range k.viewers {
		vs = append(vs, v)
	}
	k.mu.Unlock()
	for _, v := range vs {
		k.srv.endResource(v, reason)
	}
	k.group.Close()
}

// whepViewer is one WHEP session.
type whepViewer struct {
	srv  *Server
	sub  *session.Subscription
	sink *whepSink
	res  string
	pcv  *webrtc.PeerConnection
	once sync.Once
	ices iceState

	mu        sync.Mutex
	viewing   bool
	senders   []fanout.Binding
	fan       *fanout.Viewer // once connected
	attached  bool
	closedNow bool // close has run: a late attach undoes itself
}

// handleWHEP serves POST /whep/{stream}: admission, the stream's subscription,
// then the answer with its tracks.
func (srv *Server) handleWHEP(w http.ResponseWriter, r *http.Request) {
	o, ok := srv.readOffer(w, r, false)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	sub, err := srv.core.Subscribe(ctx, o.stream)
	if err != nil {
		srv.core.Refused()
		writeErr(w, err)
		return
	}
	sink := sub.Sink("whep", func() session.Sink { return newWHEPSink(srv, o.stream) }).(*whepSink)
	v := &whepViewer{srv: srv, sub: sub, sink: sink, res: newResourceID()}
	answer, err := v.answer(ctx, o.sdp)
	if err != nil {
		v.close("")
		srv.core.Refused()
		writeErr(w, err)
		return
	}
	srv.addResource(v)
	srv.writeCreated(w, "whep", o.stream, v.res, answer)
}

// answer makes the viewer's PeerConnection with the stream's tracks.
func (v *whepViewer) answer(ctx context.Context, offer string) (string, error) {
	pc, err := v.srv.view.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	v.pcv = pc
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", badSDP("The SDP offer cannot be used", err)
	}
	var senders []fanout.Binding
	for _, t := range v.sub.Tracks() {
		v.sink.mu.Lock()
		lt := v.sink.local[t.Index]
		v.sink.mu.Unlock()
		if lt == nil {
			continue
		}
		s, err := pc.AddTrack(lt)
		if err != nil {
			return "", badSDP("The offer cannot receive the stream's tracks", err)
		}
		senders = append(senders, fanout.Binding{Track: t.Index, Sender: s})
	}
	v.mu.Lock()
	v.senders = senders
	v.mu.Unlock()
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			v.attach()
			v.sub.KeyframeAll()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			v.srv.endResource(v, "peer connection "+st.String())
		}
	})
	answer, err := completeAnswer(ctx, pc)
	if err != nil {
		return "", err
	}
	if !v.sub.Viewing() {
		return "", session.ErrNotLive
	}
	v.mu.Lock()
	v.viewing = true
	v.mu.Unlock()
	v.sink.mu.Lock()
	v.sink.viewers[v] = struct{}{}
	v.sink.mu.Unlock()
	return answer, nil
}

// attach puts the connected viewer on the sink's fan-out, once (a peer
// connection that reconnects after an ICE restart keeps its place: the
// fan-out follows the selected ICE pair). A viewer that cannot be attached
// is ended: it would receive nothing.
func (v *whepViewer) attach() {
	v.mu.Lock()
	if v.attached {
		v.mu.Unlock()
		return
	}
	v.attached = true
	senders := v.senders
	v.mu.Unlock()
	fv, err := v.sink.group.Attach(v.pcv, senders, v.sub.Keyframe)
	if err != nil {
		v.srv.log.Error("whep: fan-out", "stream", v.sub.Stream(), "err", err)
		go v.srv.endResource(v, "fan-out: "+err.Error())
		return
	}
	v.mu.Lock()
	v.fan = fv
	closed := v.closedNow
	v.mu.Unlock()
	if closed {
		fv.Close()
	}
}

func (v *whepViewer) resource() string           { return v.res }
func (v *whepViewer) pc() *webrtc.PeerConnection { return v.pcv }
func (v *whepViewer) streamID() string           { return v.sub.Stream() }
func (v *whepViewer) ice() *iceState             { return &v.ices }
func (v *whepViewer) kind() string               { return wire.KindPlay }

// close ends the viewer's session and leaves the subscription.
func (v *whepViewer) close(reason string) {
	v.once.Do(func() {
		if reason != "" {
			v.srv.log.Info("whep: session closed", "stream", v.sub.Stream(), "reason", reason)
		}
		v.mu.Lock()
		fv := v.fan
		v.closedNow = true
		v.mu.Unlock()
		if fv != nil {
			fv.Close()
		}
		if v.pcv != nil {
			_ = v.pcv.Close()
		}
		v.sink.mu.Lock()
		delete(v.sink.viewers, v)
		v.sink.mu.Unlock()
		v.mu.Lock()
		viewing := v.viewing
		v.mu.Unlock()
		v.sub.Leave(viewing)
	})
}

var (
	_ session.Sink = (*whepSink)(nil)
	_ resource     = (*whepViewer)(nil)
)
