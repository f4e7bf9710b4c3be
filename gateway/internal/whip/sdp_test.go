package whip

import (
	"strings"
	"testing"
)

const sendOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"

func TestCheckOfferCountsUsableMediaAndRefusesOffersWithoutAny(t *testing.T) {
	info, err := checkOffer([]byte(sendOffer), true)
	if err != nil || info.media != 2 {
		t.Fatalf("publish offer: %+v %v", info, err)
	}
	if _, err := checkOffer([]byte(sendOffer), false); err == nil || !strings.Contains(err.Error(), "receives no audio or video") {
		t.Fatalf("a sendonly offer on WHEP: %v", err)
	}
	if _, err := checkOffer([]byte("v=0\r\nnot sdp\r\n"), true); err == nil || !strings.Contains(err.Error(), "malformed SDP") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestCandidatesFromFragReadsCandidatesMidsAndUfrag(t *testing.T) {
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:xyz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	cands, ufrag, err := candidatesFromFrag(frag)
	if err != nil || ufrag != "abcd" || len(cands) != 1 || *cands[0].SDPMid != "0" || !strings.HasPrefix(cands[0].Candidate, "candidate:1 ") {
		t.Fatalf("got %+v %q %v", cands, ufrag, err)
	}
	if _, _, err := candidatesFromFrag("this is not a fragment"); err == nil {
		t.Fatal("a body that is not SDP was accepted")
	}
}

func FuzzCheckOffer(f *testing.F) {
	f.Add([]byte(sendOffer), true)
	f.Add([]byte("v=0\r\n"), false)
	f.Fuzz(func(t *testing.T, b []byte, publish bool) {
		info, err := checkOffer(b, publish)
		if err == nil && (info.media < 1 || info.media > 16) {
			t.Fatalf("accepted an offer with %d media sections", info.media)
		}
	})
}

func FuzzCandidatesFromFrag(f *testing.F) {
	f.Add("a=ice-ufrag:x\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n")
	f.Add("m=audio 9 RTP/AVP 0\r\na=mid:0\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		cands, _, err := candidatesFromFrag(s)
		if err == nil {
			for _, c := range cands {
				if !strings.HasPrefix(c.Candidate, "candidate:") {
					t.Fatalf("candidate %q", c.Candidate)
				}
			}
		}
	})
}
