package fanout

import (
	"cmp"
	"strings"

	"github.com/pion/webrtc/v4"
)

// payloadType is the payload type a viewer's sender negotiated for a track
// of codec want, among the sender's codecs (RTPSender.GetParameters). pion
// binds a local track the same way but keeps the result to itself: the codec
// of the same MIME type whose format parameters match (for H.264 the
// packetization mode and the profile), else the first of the same MIME type.
// The first codec of the kind is not it: a transceiver lists VP8 before H.264.
func payloadType(codecs []webrtc.RTPCodecParameters, want webrtc.RTPCodecCapability) (webrtc.PayloadType, bool) {
	first := -1
	for i, c := range codecs {
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if fmtpMatch(c.MimeType, c.SDPFmtpLine, want.SDPFmtpLine) {
			return c.PayloadType, true
		}
		if first < 0 {
			first = i
		}
	}
	if first < 0 {
		return 0, false
	}
	return codecs[first].PayloadType, true
}

// fmtpMatch reports whether two format parameter lines describe the same
// stream: for H.264 the same packetization-mode (absent is 0) and
// profile-level-id profile (its first four hex digits; the level may
// differ); otherwise the same parameters in any order.
func fmtpMatch(mime, a, b string) bool {
	pa, pb := fmtpParams(a), fmtpParams(b)
	if strings.EqualFold(mime, webrtc.MimeTypeH264) {
		mode := func(p map[string]string) string { return cmp.Or(p["packetization-mode"], "0") }
		profile := func(p map[string]string) string {
			id := p["profile-level-id"]
			if len(id) >= 4 {
				return strings.ToLower(id[:4])
			}
			return "42e0" // RFC 6184's default: Constrained Baseline
		}
		return mode(pa) == mode(pb) && profile(pa) == profile(pb)
	}
	if len(pa) != len(pb) {
		return false
	}
	for k, v := range pa {
		if pb[k] != v {
			return false
		}
	}
	return true
}

// fmtpParams splits a format parameter line ("a=1;b=2") into its
// parameters, keys lower-cased.
func fmtpParams(line string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			out[strings.ToLower(k)] = v
		}
	}
	return out
}
