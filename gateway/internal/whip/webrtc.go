package whip

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/sluicegw/sluice/gateway/internal/session"
)

// NewAPI builds the pion API the WHIP sessions of a gateway share: the
// standard codecs, pion's default interceptors (NACK generation and response,
// RTCP reports, TWCC), and ICE on the one UDP socket udp. It is exported so
// that a benchmark's baseline relay can run with exactly the gateway's pion
// settings.
func NewAPI(cfg Config, udp net.PacketConn) (*webrtc.API, error) {
	lf := loggerFactory()
	return newAPI(cfg.withDefaults(), onePort(udp, lf.NewLogger("ice-mux")), lf, true)
}

func loggerFactory() *logging.DefaultLoggerFactory {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelWarn
	return lf
}

// The WHEP viewers' API (interceptors false) has none: their RTP leaves
// through the fan-out (gateway/internal/fanout), which sends the sender
// reports and answers NACKs itself, and the default codecs already offer
// the feedback it reads (nack, nack pli, ccm fir, goog-remb). transport-cc
// is not offered, as the fan-out writes no transport-wide sequence numbers.
func newAPI(cfg Config, port *icePort, lf logging.LoggerFactory, interceptors bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("gateway: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if interceptors {
		if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
			return nil, fmt.Errorf("gateway: interceptors: %w", err)
		}
	}
	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEUDPMux(port.mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Host candidates are the mux's listen addresses; loopback ones are offered
	// only when the port is bound for this machine (RATIONALE.md).
	se.SetIncludeLoopbackCandidate(port.loopback || len(cfg.ICEHosts) > 0 && isLoopbackList(cfg.ICEHosts))
	if len(cfg.ICEHosts) > 0 {
		se.SetNAT1To1IPs(cfg.ICEHosts, webrtc.ICECandidateTypeHost)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func isLoopbackList(hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// answerOffer applies a remote offer and returns the complete local answer, with
// its ICE candidates (gathering on one UDP port takes no network round trip).
func answerOffer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", badSDP("The SDP offer cannot be used", err)
	}
	return completeAnswer(ctx, pc)
}

func completeAnswer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", badSDP("The SDP offer cannot be answered", err)
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

func badSDP(title string, err error) error {
	return &session.Error{Status: http.StatusBadRequest, Kind: "bad-sdp", Title: title, Detail: err.Error()}
}
