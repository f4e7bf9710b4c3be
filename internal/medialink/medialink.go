// Package medialink is the internal media link between a gateway and a node: one
// QUIC connection (mutual TLS from the cluster CA) per stream and direction.
//
// A gateway opens the connection and a bidirectional control stream, sends a Hello
// saying which stream it publishes or subscribes to, and the two ends exchange
// media path ids (Hello and OK). From then on RTP travels on the link's media path
// (Path): one UDP packet per RTP packet on a media port of its own beside the
// QUIC connection's (announced in Hello and OK), sealed with keys derived from
// its TLS handshake and bound to both paths' ids and the direction, prefixed by
// a one-byte header (packet type and track index). Feedback — keyframe requests and NACKs — travels
// the other way as QUIC datagrams of its own types. A packet too large for the
// media path goes on the connection, as a datagram or on a short unidirectional
// stream with the same framing, so nothing is lost to path MTU. RATIONALE.md says
// why.
package medialink

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN is the TLS application protocol of the media link. Its version changes
// with the wire format, the media path's key schedule included, so that ends of
// different formats refuse each other at the handshake.
const ALPN = "sluice-media/4"

// MaxTracks is the most tracks one stream may carry (the index is 4 bits).
const MaxTracks = 16

// MaxControlMsg bounds one control message; larger ones are a protocol error.
const MaxControlMsg = 64 << 10

// Roles in a Hello.
const (
	RolePublish   = "publish"
	RoleSubscribe = "subscribe"
)

// Control message types.
const (
	MsgHello  = "hello"  // gateway → node, first message
	MsgOK     = "ok"     // node → gateway, hello accepted
	MsgError  = "error"  // node → gateway, hello refused; the node closes the link
	MsgTracks = "tracks" // publisher gateway → node, node → subscriber gateways
	MsgGone   = "gone"   // node → subscriber gateways: the publisher left
)

// Packet types in the datagram header's high nibble.
const (
	TypeRTP  byte = 0 // payload: one RTP packet
	TypePLI  byte = 1 // payload: none; ask the publisher for a keyframe
	TypeNACK byte = 2 // payload: missing RTP sequence numbers, uint16 big-endian each
)

// Errors a caller branches on.
var (
	ErrProtocol = errors.New("medialink: protocol error")
)

// Track describes one media track of a stream as the publisher negotiated it.
type Track struct {
	Index       uint8  `json:"index"`
	Kind        string `json:"kind"` // "audio" or "video"
	MimeType    string `json:"mimeType"`
	ClockRate   uint32 `json:"clockRate"`
	Channels    uint16 `json:"channels,omitempty"`
	SDPFmtpLine string `json:"fmtp,omitempty"`
	PayloadType uint8  `json:"pt"`
	SSRC        uint32 `json:"ssrc"`
}

// Msg is one control message.
type Msg struct {
	T       string `json:"t"`
	Stream  string `json:"stream,omitempty"`  // hello
	Role    string `json:"role,omitempty"`    // hello
	Gateway string `json:"gateway,omitempty"` // hello
	// Path is the sender's media path id (Path.ID), in hello and ok: the other end
	// addresses its media packets with it.
	Path uint32 `json:"path,omitempty"`
	// Port is the sender's media port (Endpoint.MediaPort), in hello and ok: the
	// other end sends its media packets there, on the link's remote host.
	Port uint16 `json:"port,omitempty"`
	// Tracks are the tracks known so far and Expect how many the publisher
	// negotiated, so a subscriber knows when the set is complete.
	Tracks []Track `json:"tracks,omitempty"`
	Expect int     `json:"expect,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// Validate checks a message from the other side.
func (m *Msg) Validate() error {
	switch m.T {
	case MsgHello:
		if m.Role != RolePublish && m.Role != RoleSubscribe {
			return fmt.Errorf("%w: hello role %q", ErrProtocol, m.Role)
		}
		if m.Stream == "" {
			return fmt.Errorf("%w: hello without a stream", ErrProtocol)
		}
	case MsgTracks:
		if len(m.Tracks) > MaxTracks || m.Expect < 0 || m.Expect > MaxTracks {
			return fmt.Errorf("%w: %d tracks, expect %d (at most %d)", ErrProtocol, len(m.Tracks), m.Expect, MaxTracks)
		}
		seen := 0
		for _, t := range m.Tracks {
			if t.Index >= MaxTracks || seen&(1<<t.Index) != 0 {
				return fmt.Errorf("%w: track index %d repeated or out of range", ErrProtocol, t.Index)
			}
			seen |= 1 << t.Index
			if t.Kind != "audio" && t.Kind != "video" {
				return fmt.Errorf("%w: track kind %q", ErrProtocol, t.Kind)
			}
		}
	case MsgOK, MsgError, MsgGone:
	default:
		return fmt.Errorf("%w: unknown message type %q", ErrProtocol, m.T)
	}
	return nil
}

// WriteMsg writes one length-prefixed control message.
func WriteMsg(w io.Writer, m *Msg) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(body) > MaxControlMsg {
		return fmt.Errorf("%w: control message of %d bytes", ErrProtocol, len(body))
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// ReadMsg reads and validates one control message.
func ReadMsg(r io.Reader) (*Msg, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxControlMsg {
		return nil, fmt.Errorf("%w: control message of %d bytes, at most %d", ErrProtocol, n, MaxControlMsg)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	m := new(Msg)
	if err := json.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Header packs a datagram header.
func Header(typ, track byte) byte { return typ<<4 | track&0x0f }

// ParsePacket splits a datagram into its type, track index and payload.
func ParsePacket(p []byte) (typ, track byte, payload []byte, err error) {
	if len(p) == 0 {
		return 0, 0, nil, fmt.Errorf("%w: empty datagram", ErrProtocol)
	}
	typ, track = p[0]>>4, p[0]&0x0f
	payload = p[1:]
	switch typ {
	case TypeRTP:
		if len(payload) < 12 {
			return 0, 0, nil, fmt.Errorf("%w: RTP packet of %d bytes", ErrProtocol, len(payload))
		}
	case TypePLI:
	case TypeNACK:
		if len(payload)%2 != 0 || len(payload) == 0 {
			return 0, 0, nil, fmt.Errorf("%w: NACK payload of %d bytes", ErrProtocol, len(payload))
		}
	default:
		return 0, 0, nil, fmt.Errorf("%w: packet type %d", ErrProtocol, typ)
	}
	return typ, track, payload, nil
}

// QUICConfig is the QUIC configuration of both ends. The idle timeout is what
// turns a dead peer into a dropped link; keep-alives keep a quiet link open.
func QUICConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams: true,
		// A dead node must become a dropped link fast: viewers wait for it. Keep-alives
		// every 200 ms keep a quiet link from tripping the 1 s idle timeout.
		MaxIdleTimeout:       time.Second,
		KeepAlivePeriod:      200 * time.Millisecond,
		HandshakeIdleTimeout: 3 * time.Second,
		// RTP from browsers is up to ~1250 bytes; start large enough that it fits a
		// datagram without waiting for path MTU discovery. Internal links run on
		// networks with a 1500-byte MTU.
		InitialPacketSize:     1452,
		MaxIncomingUniStreams: 1000,
	}
}

// Listen opens a media listener. tlsConf must require client certificates (see
// pki.Identity.ServerTLS); ALPN is set here.
func Listen(addr string, tlsConf *tls.Config) (*quic.Listener, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{ALPN}
	ln, err := quic.ListenAddr(addr, tc, QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("medialink: listen %s: %w", addr, err)
	}
	return ln, nil
}

// Dial opens a media link connection to a node.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*quic.Conn, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{ALPN}
	c, err := quic.DialAddr(ctx, addr, tc, QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("medialink: dial %s: %w", addr, err)
	}
	return c, nil
}
