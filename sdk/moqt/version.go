package moqt

import "fmt"

// Version is a MoQT version number as the drafts write it (0xff000000 + draft).
type Version uint32

// The versions this package encodes and decodes.
const (
	// Draft16 is draft-ietf-moq-transport-16: RFC 9000 varints, one bidirectional
	// control stream opened by the client, CLIENT_SETUP / SERVER_SETUP.
	Draft16 Version = 0xff000010
	// Draft17 is draft-ietf-moq-transport-17: leading-ones varints, SETUP on a
	// pair of unidirectional control streams, one bidirectional stream per request.
	Draft17 Version = 0xff000011
	// Draft19 is draft-ietf-moq-transport-19: as draft 17 without Required
	// Request ID Delta and PUBLISH_OK (REQUEST_OK answers PUBLISH), with track
	// properties in REQUEST_OK, a Redirect in REQUEST_ERROR, the FIRST_OBJECT
	// subgroup bit, 7-byte varints and a new message parameter table.
	Draft19 Version = 0xff000013

	// draft18 is not implemented; it names where draft 18's changes begin.
	draft18 Version = 0xff000012
)

// Supported lists the versions in the order a server prefers them: the
// newest first, as MediaMTX and @moq/net 0.1.9 both offer 19 (RATIONALE.md).
var Supported = []Version{Draft19, Draft17, Draft16}

// ALPN is the QUIC ALPN and WebTransport subprotocol that selects v ("moqt-NN").
func (v Version) ALPN() string { return fmt.Sprintf("moqt-%d", uint32(v)&0xff) }

// String names the draft, e.g. "draft-16".
func (v Version) String() string {
	if v>>8 == 0xff0000 {
		return fmt.Sprintf("draft-%d", uint32(v)&0xff)
	}
	return fmt.Sprintf("version 0x%x", uint32(v))
}

// Valid reports whether this package implements v.
func (v Version) Valid() bool { return v == Draft16 || v == Draft17 || v == Draft19 }

// VersionFromALPN returns the version an ALPN or WebTransport subprotocol
// selects, and false for any this package does not implement.
func VersionFromALPN(alpn string) (Version, bool) {
	for _, v := range Supported {
		if v.ALPN() == alpn {
			return v, true
		}
	}
	return 0, false
}

// Negotiate picks the first of Supported that the peer offered, the way a
// server answers WT-Available-Protocols or a QUIC ALPN list.
func Negotiate(offered []string) (Version, bool) {
	for _, v := range Supported {
		for _, o := range offered {
			if o == v.ALPN() {
				return v, true
			}
		}
	}
	return 0, false
}

// The layout differences between drafts, each asked in one place so that adding
// a version changes these predicates and the few layouts that test them.

// leadingOnes: draft 17 replaced RFC 9000 varints with the leading-ones form.
func (v Version) leadingOnes() bool { return v >= Draft17 }

// requestStreams: draft 17 moved each request to its own bidirectional stream,
// so responses drop the Request ID and the cancel messages go.
func (v Version) requestStreams() bool { return v >= Draft17 }

// requiredRequestID: only draft 17 has Required Request ID Delta (added in 17,
// removed in 18, #1615).
func (v Version) requiredRequestID() bool { return v == Draft17 }

// requestOKAlias: draft 18 made PUBLISH_OK an alias of REQUEST_OK (#1611) and
// added track properties to REQUEST_OK (#1576), a Redirect to REQUEST_ERROR
// (#1534) and the FIRST_OBJECT subgroup header bit (#1618).
func (v Version) requestOKAlias() bool { return v >= draft18 }
