package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
)

// whepSink is the WHEP side of a subscription: one pion local track per stream
// track, bound to every WHEP viewer's PeerConnection, so a packet written once
// reaches all of them (pion's own fan-out, with its NACK responder and RTCP
// reports per viewer).
type whepSink struct {
	g      *Gateway
	stream string

	mu      sync.Mutex
	local   [medialink.MaxTracks]*webrtc.TrackLocalStaticRTP
	viewers map[*whepViewer]struct{}
}

func newWHEPSink(g *Gateway, stream string) *whepSink {
	return &whepSink{g: g, stream: stream, viewers: map[*whepViewer]struct{}{}}
}

func (k *whepSink) AddTrack(t medialink.Track) {
	lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
		MimeType: t.MimeType, ClockRate: t.ClockRate, Channels: t.Channels, SDPFmtpLine: t.SDPFmtpLine,
	}, t.Kind, k.stream)
	if err != nil {
		k.g.log.Warn("whep: track", "stream", k.stream, "err", err)
		return
	}
	k.mu.Lock()
	k.local[t.Index] = lt
	k.mu.Unlock()
}

func (k *whepSink) WriteRTP(track uint8, pkt *rtp.Packet) int {
	k.mu.Lock()
	lt, n := k.local[track], len(k.viewers)
	k.mu.Unlock()
	if lt == nil || n == 0 || lt.WriteRTP(pkt) != nil {
		return 0
	}
	return n
}

func (k *whepSink) End(reason string) {
	k.mu.Lock()
	vs := make([]*whepViewer, 0, len(k.viewers))
	for v := range k.viewers {
		vs = append(vs, v)
	}
	k.mu.Unlock()
	for _, v := range vs {
		k.g.endResource(v, reason)
	}
}

// whepViewer is one WHEP session.
type whepViewer struct {
	g    *Gateway
	sub  *subscription
	sink *whepSink
	res  string
	pcv  *webrtc.PeerConnection
	once sync.Once

	mu      sync.Mutex
	viewing bool
}

// handleWHEP serves POST /whep/{stream}: admission, the stream's subscription,
// then the answer with its tracks.
func (g *Gateway) handleWHEP(w http.ResponseWriter, r *http.Request) {
	o, ok := g.readOffer(w, r, false)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	sub, err := g.subscribe(ctx, o.stream)
	if err != nil {
		g.m.refused.Inc()
		writeErr(w, err)
		return
	}
	sink := sub.sink("whep", func() Sink { return newWHEPSink(g, o.stream) }).(*whepSink)
	v := &whepViewer{g: g, sub: sub, sink: sink, res: newResourceID()}
	answer, err := v.answer(ctx, o.sdp)
	if err != nil {
		v.close("")
		g.m.refused.Inc()
		writeErr(w, err)
		return
	}
	g.addResource(v)
	writeCreated(w, "whep", o.stream, v.res, answer)
}

// answer makes the viewer's PeerConnection with the stream's tracks.
func (v *whepViewer) answer(ctx context.Context, offer string) (string, error) {
	pc, err := v.g.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	v.pcv = pc
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", badSDP("The SDP offer cannot be used", err)
	}
	type sender struct {
		track uint8
		s     *webrtc.RTPSender
	}
	var senders []sender
	for _, t := range v.sub.tracks() {
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
		senders = append(senders, sender{t.Index, s})
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			v.sub.keyframeAll()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			v.g.endResource(v, "peer connection "+st.String())
		}
	})
	answer, err := completeAnswer(ctx, pc)
	if err != nil {
		return "", err
	}
	for _, s := range senders {
		go v.readFeedback(s.track, s.s)
	}
	if !v.sub.viewing() {
		return "", errNotLive
	}
	v.mu.Lock()
	v.viewing = true
	v.mu.Unlock()
	v.sink.mu.Lock()
	v.sink.viewers[v] = struct{}{}
	v.sink.mu.Unlock()
	return answer, nil
}

// readFeedback turns the viewer's keyframe requests into one upstream request.
// pion's NACK responder answers the viewer's NACKs from the gateway's own buffer.
func (v *whepViewer) readFeedback(track uint8, sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.sub.keyframe(track)
			}
		}
	}
}

func (v *whepViewer) resource() string           { return v.res }
func (v *whepViewer) pc() *webrtc.PeerConnection { return v.pcv }
func (v *whepViewer) streamID() string           { return v.sub.stream }
func (v *whepViewer) kind() string               { return wire.KindPlay }

// close ends the viewer's session and leaves the subscription.
func (v *whepViewer) close(reason string) {
	v.once.Do(func() {
		if reason != "" {
			v.g.log.Info("whep: session closed", "stream", v.sub.stream, "reason", reason)
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
		v.sub.leave(viewing)
	})
}

var (
	_ Sink     = (*whepSink)(nil)
	_ resource = (*whepViewer)(nil)
)
