package main

import (
	"context"
	"testing"

	"github.com/pion/webrtc/v4"
)

func contextWithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

func webrtcConfig() webrtc.Configuration { return webrtc.Configuration{} }

// offerSDP makes an offer with a sending (publish) or receiving VP8+Opus pair.
func offerSDP(t *testing.T, pc *webrtc.PeerConnection, send bool) string {
	t.Helper()
	dir := webrtc.RTPTransceiverDirectionRecvonly
	if send {
		dir = webrtc.RTPTransceiverDirectionSendonly
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

func recvOffer(t *testing.T, api *webrtc.API) string {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return offerSDP(t, pc, false)
}
