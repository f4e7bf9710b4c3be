package whip

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/wire"
)

// whipSession is one WHIP publisher (RFC 9725): a browser's or encoder's
// PeerConnection, the session.Source of its stream's publication.
type whipSession struct {
	srv  *Server
	pub  *session.Publication
	res  string
	pcv  *webrtc.PeerConnection
	once sync.Once
	ices iceState

	mu   sync.Mutex
	ssrc [medialink.MaxTracks]uint32
}

// handleWHIP serves POST /whip/{stream}: admission, placement, then the answer.
func (srv *Server) handleWHIP(w http.ResponseWriter, r *http.Request) {
	o, ok := srv.readOffer(w, r, true)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	pub, err := srv.core.Publish(ctx, session.PublishRequest{Stream: o.stream, Protocol: "whip", Client: o.client,
		Headers: srv.routeHeaders(r), Tracks: o.info.media})
	if err != nil {
		srv.core.Refused()
		writeErr(w, err)
		return
	}
	s := &whipSession{srv: srv, pub: pub, res: newResourceID()}
	answer, err := s.answer(ctx, o.sdp)
	if err != nil {
		pub.Abort()
		srv.core.Refused()
		writeErr(w, err)
		return
	}
	pub.Start(s)
	srv.addResource(s)
	srv.writeCreated(w, "whip", o.stream, s.res, answer)
}

// answer makes the PeerConnection that receives the offer's tracks.
func (s *whipSession) answer(ctx context.Context, offer string) (string, error) {
	pc, err := s.srv.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	s.pcv = pc
	pc.OnTrack(s.forward)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			s.srv.endResource(s, "peer connection "+st.String())
		}
	})
	answer, err := answerOffer(ctx, pc, offer)
	if err != nil {
		_ = pc.Close()
		return "", err
	}
	return answer, nil
}

// forward announces one remote track and carries its RTP to the node.
func (s *whipSession) forward(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	idx := -1
	for i, tr := range s.pcv.GetTransceivers() {
		if tr.Receiver() == r {
			idx = i
		}
	}
	if idx < 0 || idx >= medialink.MaxTracks {
		return
	}
	c := t.Codec()
	tk := medialink.Track{Index: uint8(idx), Kind: t.Kind().String(), MimeType: c.MimeType, ClockRate: c.ClockRate,
		Channels: c.Channels, SDPFmtpLine: c.SDPFmtpLine, PayloadType: uint8(t.PayloadType()), SSRC: uint32(t.SSRC())}
	s.mu.Lock()
	s.ssrc[idx] = tk.SSRC
	s.mu.Unlock()
	s.pub.AddTrack(tk)
	s.srv.log.Info("whip: track", "stream", s.pub.Stream(), "index", idx, "codec", c.MimeType)
	buf := make([]byte, 1600)
	for {
		n, _, err := t.Read(buf[1:])
		if err != nil {
			return
		}
		s.pub.WriteRTP(uint8(idx), buf[:n+1])
	}
}

// RequestKeyframe sends the publisher a picture loss indication.
func (s *whipSession) RequestKeyframe(track uint8) {
	s.mu.Lock()
	ssrc := s.ssrc[track]
	s.mu.Unlock()
	if ssrc != 0 {
		_ = s.pcv.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
}

func (s *whipSession) resource() string           { return s.res }
func (s *whipSession) pc() *webrtc.PeerConnection { return s.pcv }
func (s *whipSession) streamID() string           { return s.pub.Stream() }
func (s *whipSession) ice() *iceState             { return &s.ices }
func (s *whipSession) kind() string               { return wire.KindPublish }

// close ends the WHIP session: the client's connection and the publication.
func (s *whipSession) close(reason string) {
	s.once.Do(func() {
		s.srv.log.Info("whip: session closed", "stream", s.pub.Stream(), "reason", reason)
		_ = s.pcv.Close()
		s.pub.End()
	})
}

var (
	_ session.Source = (*whipSession)(nil)
	_ resource       = (*whipSession)(nil)
)
