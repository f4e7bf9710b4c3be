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

func TestParseFragReadsCredentialsCandidatesAndMids(t *testing.T) {
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	f, err := parseFrag(frag)
	if err != nil || f.ufrag != "abcd" || f.pwd != "0123456789abcdefghijkl" || len(f.cands) != 1 || *f.cands[0].SDPMid != "0" || !strings.HasPrefix(f.cands[0].Candidate, "candidate:1 ") {
		t.Fatalf("got %+v %v", f, err)
	}
	for _, bad := range []string{"this is not a fragment", "a=ice-ufrag:ab\r\n", "a=ice-ufrag:abcd\r\na=ice-pwd:short\r\n", "a=ice-ufrag:ab cd\r\n"} {
		if _, err := parseFrag(bad); err == nil {
			t.Errorf("parseFrag(%q) accepted it", bad)
		}
	}
}

// An ICE restart's answer names the new credentials and the candidates of the
// bundle's first media section; the restarted offer keeps everything but the
// old credentials and candidates.
func TestRestartedOfferSwapsCredentialsAndLocalFragCarriesThem(t *testing.T) {
	remote := strings.Replace(sendOffer, "a=mid:0\r\n",
		"a=mid:0\r\na=ice-ufrag:old1\r\na=ice-pwd:oldoldoldoldoldoldold1\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", 1)
	offer, err := restartedOffer(remote, iceFrag{ufrag: "new1", pwd: "newnewnewnewnewnewnew1"})
	if err != nil || strings.Contains(offer, "old1") || strings.Contains(offer, "candidate:") ||
		strings.Count(offer, "a=ice-ufrag:new1") != 2 || !strings.Contains(offer, "a=rtpmap:96 VP8/90000") || !strings.Contains(offer, "o=- 1 3 ") {
		t.Fatalf("restarted offer:\n%s\n%v", offer, err)
	}
	frag, err := localFrag(remote)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseFrag(frag)
	if err != nil || f.ufrag != "old1" || f.pwd != "oldoldoldoldoldoldold1" || len(f.cands) != 1 || *f.cands[0].SDPMid != "0" ||
		!strings.HasSuffix(frag, "a=end-of-candidates\r\n") {
		t.Fatalf("local frag:\n%s\n%+v %v", frag, f, err)
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

func FuzzParseFrag(f *testing.F) {
	f.Add("a=ice-ufrag:x\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n")
	f.Add("m=audio 9 RTP/AVP 0\r\na=mid:0\r\n")
	f.Add("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=end-of-candidates\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		f, err := parseFrag(s)
		if err == nil {
			if f.ufrag != "" && !iceChars(f.ufrag, 4) || f.pwd != "" && !iceChars(f.pwd, 22) {
				t.Fatalf("credentials %q %q", f.ufrag, f.pwd)
			}
			for _, c := range f.cands {
				if !strings.HasPrefix(c.Candidate, "candidate:") {
					t.Fatalf("candidate %q", c.Candidate)
				}
			}
		}
	})
}
