package main

import (
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/mediatest"
)

var mediatestAPI = mediatest.API

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

// postOffer publishes a minimal offer and returns the status and body.
func postOffer(t *testing.T, url string) (int, string) {
	t.Helper()
	api, _ := mediatestAPI()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	resp, body := post(t, url, "application/sdp", offerSDP(t, pc, true))
	return resp.StatusCode, body
}
