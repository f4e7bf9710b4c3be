package whip

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// offerInfo is what the gateway needs to know of an offer before it does any work.
type offerInfo struct {
	media int // audio and video sections
}

// checkOffer parses an SDP offer and refuses what no session could use. dir is the
// direction the client must offer media in: send for WHIP, receive for WHEP.
func checkOffer(body []byte, publish bool) (offerInfo, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return offerInfo{}, fmt.Errorf("malformed SDP: %w", err)
	}
	var info offerInfo
	for _, m := range sd.MediaDescriptions {
		switch m.MediaName.Media {
		case "audio", "video":
		default:
			continue // data channels and others are ignored, not refused
		}
		if m.MediaName.Port.Value == 0 {
			continue // rejected section
		}
		dir := "sendrecv"
		for _, a := range m.Attributes {
			switch a.Key {
			case "sendonly", "recvonly", "sendrecv", "inactive":
				dir = a.Key
			}
		}
		if publish && (dir == "recvonly" || dir == "inactive") || !publish && (dir == "sendonly" || dir == "inactive") {
			continue
		}
		info.media++
	}
	if info.media == 0 {
		if publish {
			return info, errors.New("the offer sends no audio or video")
		}
		return info, errors.New("the offer receives no audio or video")
	}
	if info.media > 16 {
		return info, fmt.Errorf("the offer has %d media sections; at most 16 are allowed", info.media)
	}
	return info, nil
}

// iceFrag is an application/trickle-ice-sdpfrag body (RFC 8840): the ICE
// credentials it names, if any, and its candidates.
type iceFrag struct {
	ufrag, pwd string
	cands      []webrtc.ICECandidateInit
}

// parseFrag parses an application/trickle-ice-sdpfrag body. Credentials it
// carries must be valid ice-chars of RFC 8839 §5.4 (ufrag 4–256, pwd 22–256).
func parseFrag(body string) (iceFrag, error) {
	var f iceFrag
	var mid *string
	var mline uint16
	sawMedia := false
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case line == "":
		case strings.HasPrefix(line, "m="):
			if sawMedia {
				mline++
			}
			sawMedia = true
			mid = nil
		case strings.HasPrefix(line, "a=mid:"):
			v := strings.TrimPrefix(line, "a=mid:")
			mid = &v
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
			if !iceChars(f.ufrag, 4) {
				return iceFrag{}, fmt.Errorf("a=ice-ufrag %q is not 4 to 256 ice-chars", f.ufrag)
			}
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
			if !iceChars(f.pwd, 22) {
				return iceFrag{}, errors.New("a=ice-pwd is not 22 to 256 ice-chars")
			}
		case strings.HasPrefix(line, "a=candidate:"):
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")}
			if mid != nil {
				m := *mid
				c.SDPMid = &m
			}
			idx := mline
			c.SDPMLineIndex = &idx
			f.cands = append(f.cands, c)
		case strings.HasPrefix(line, "a="):
		default:
			if len(line) < 2 || line[1] != '=' {
				return iceFrag{}, fmt.Errorf("line %q is not SDP", line)
			}
		}
	}
	return f, sc.Err()
}

func iceChars(s string, minLen int) bool {
	if len(s) < minLen || len(s) > 256 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// localFrag is the sdpfrag that answers an ICE restart (RFC 9725 §4.3.2):
// the credentials and candidates of a local description, under its first
// media section (the bundle's transport).
func localFrag(desc string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(desc); err != nil {
		return "", fmt.Errorf("local description: %w", err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return "", errors.New("local description has no media section")
	}
	m := sd.MediaDescriptions[0]
	attr := func(key string) string {
		if v, ok := m.Attribute(key); ok {
			return v
		}
		v, _ := sd.Attribute(key)
		return v
	}
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + attr("ice-ufrag") + "\r\na=ice-pwd:" + attr("ice-pwd") + "\r\n")
	b.WriteString("m=" + m.MediaName.String() + "\r\n")
	if mid := attr("mid"); mid != "" {
		b.WriteString("a=mid:" + mid + "\r\n")
	}
	for _, a := range m.Attributes {
		if a.Key == "candidate" {
			b.WriteString("a=candidate:" + a.Value + "\r\n")
		}
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String(), nil
}

// restartedOffer is the remote offer with the ICE credentials of a restart in
// place of the old ones and without the old candidates (RFC 9725 §4.3.2: the
// rest of the session stays as negotiated).
func restartedOffer(remote string, f iceFrag) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(remote); err != nil {
		return "", fmt.Errorf("remote description: %w", err)
	}
	sd.Origin.SessionVersion++
	strip := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag", "ice-pwd", "candidate", "end-of-candidates":
			default:
				out = append(out, a)
			}
		}
		return out
	}
	sd.Attributes = strip(sd.Attributes)
	for _, m := range sd.MediaDescriptions {
		m.Attributes = append(strip(m.Attributes), sdp.NewAttribute("ice-ufrag", f.ufrag), sdp.NewAttribute("ice-pwd", f.pwd))
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("restarted offer: %w", err)
	}
	return string(b), nil
}
