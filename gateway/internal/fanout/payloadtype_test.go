package fanout

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// The payload type a viewer gets is the one its sender negotiated for the
// track's codec, among pion's default codecs, not the first of the kind
// (VP8): an H.264 stream sent as VP8's payload type is undecodable.
func TestTheViewersPayloadTypeIsTheNegotiatedOneOfTheTracksCodec(t *testing.T) {
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(&me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tr, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	codecs := tr.Sender().GetParameters().Codecs
	byPT := map[webrtc.PayloadType]webrtc.RTPCodecParameters{}
	for _, c := range codecs {
		byPT[c.PayloadType] = c
	}
	for _, c := range []struct {
		want    webrtc.RTPCodecCapability
		mime    string
		fmtpHas []string
	}{
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, webrtc.MimeTypeVP8, nil},
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, webrtc.MimeTypeH264,
			[]string{"packetization-mode=1", "profile-level-id=42e01f"}},
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "packetization-mode=1;profile-level-id=640028"}, webrtc.MimeTypeH264, // High, another level
			[]string{"packetization-mode=1", "profile-level-id=64001f"}},
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "packetization-mode=1;profile-level-id=4d0032"}, webrtc.MimeTypeH264, // Main
			[]string{"packetization-mode=1", "profile-level-id=4d001f"}},
		{webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "profile-level-id=42e01f"}, webrtc.MimeTypeH264, // mode 0
			[]string{"packetization-mode=0", "profile-level-id=42e01f"}},
	} {
		pt, ok := payloadType(codecs, c.want)
		got := byPT[pt]
		if !ok || !strings.EqualFold(got.MimeType, c.mime) {
			t.Errorf("%s %q: payload type %d is %s; want a %s one", c.want.MimeType, c.want.SDPFmtpLine, pt, got.MimeType, c.mime)
			continue
		}
		for _, p := range c.fmtpHas {
			if !strings.Contains(got.SDPFmtpLine, p) {
				t.Errorf("%s %q: payload type %d has fmtp %q; want %s", c.want.MimeType, c.want.SDPFmtpLine, pt, got.SDPFmtpLine, p)
			}
		}
	}
	if _, ok := payloadType(codecs, webrtc.RTPCodecCapability{MimeType: "video/x-unknown"}); ok {
		t.Error("a codec the sender does not offer got a payload type")
	}
}
