package gateway

import (
	"fmt"
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// NewWebRTCAPI builds the pion API every session of a gateway shares: the
// standard codecs, pion's default interceptors (NACK generation and response,
// RTCP reports, TWCC), and ICE on the one UDP socket. It is exported so that a
// benchmark's baseline relay can run with exactly the gateway's pion settings.
func NewWebRTCAPI(cfg Config, udp net.PacketConn) (*webrtc.API, error) {
	cfg = cfg.withDefaults()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("gateway: codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("gateway: interceptors: %w", err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelWarn
	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEUDPMux(webrtc.NewICEUDPMux(lf.NewLogger("ice-mux"), udp))
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	bind := net.ParseIP(cfg.ICEBind)
	se.SetIncludeLoopbackCandidate(bind != nil && bind.IsLoopback() || len(cfg.ICEHosts) > 0 && isLoopbackList(cfg.ICEHosts))
	if bind != nil && !bind.IsUnspecified() {
		// Gather only the bound address: the mux answers on nothing else.
		se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(bind) })
	}
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
