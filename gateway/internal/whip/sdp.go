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

// candidatesFromFrag parses an application/trickle-ice-sdpfrag body (RFC 8840) into
// ICE candidates, and reports the ufrag it names so an ICE restart can be told apart.
func candidatesFromFrag(body string) (cands []webrtc.ICECandidateInit, ufrag string, err error) {
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
			ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")}
			if mid != nil {
				m := *mid
				c.SDPMid = &m
			}
			idx := mline
			c.SDPMLineIndex = &idx
			cands = append(cands, c)
		case strings.HasPrefix(line, "a="):
		default:
			if len(line) < 2 || line[1] != '=' {
				return nil, "", fmt.Errorf("line %q is not SDP", line)
			}
		}
	}
	return cands, ufrag, sc.Err()
}
