package medialink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/sockbuf"
)

// Media packet layout on the wire (RATIONALE.md, "The media path"):
//
//	[1] header (packet type and track, as in a datagram)
//	[4] path id the receiver chose
//	[8] sequence number of the sender, from which the AEAD nonce and key epoch come
//	[n] sealed payload and a 16-byte tag; header, id and sequence are authenticated
const (
	mediaPrefix   = 1 + 4 + 8
	mediaOverhead = mediaPrefix + 16
	// MaxMediaPacket is the largest UDP payload a media packet may use: the same
	// 1452 bytes as the QUIC packets of the link, safe on a 1500-byte MTU.
	MaxMediaPacket = 1452
)

// Endpoint is the two UDP sockets of a gateway or node: one carries the QUIC
// connections of its media links, the other (MediaPort) their media paths — RTP
// sealed with keys from each connection's TLS handshake, one UDP packet per RTP
// packet, written by the caller's goroutine and read by Serve's own goroutine
// with no hand-off in between (RATIONALE.md, "Its own socket"). The zero value is
// not usable; see NewEndpoint.
type Endpoint struct {
	udp   net.PacketConn // QUIC, read by quic-go's transport
	media *mediaSocket   // media paths, read by Serve
	tr    *quic.Transport

	mu     sync.Mutex
	paths  map[uint32]*Path
	lastID uint32 // the id NewPath gave last; ids count up from a random start

	closeOnce sync.Once
	bufErr    error // the media socket's buffers are smaller than sockbuf.Media
}

// NewEndpoint binds the QUIC socket on addr ("127.0.0.1:0", ":4433", …) and the
// media socket on the same host and a port of the system's choosing.
func NewEndpoint(addr string) (*Endpoint, error) {
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("medialink: bind %s: %w", addr, err)
	}
	la := udp.LocalAddr().(*net.UDPAddr)
	mc, err := net.ListenUDP("udp", &net.UDPAddr{IP: la.IP, Zone: la.Zone})
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("medialink: bind the media socket beside %s: %w", addr, err)
	}
	media, err := newMediaSocket(mc)
	if err != nil {
		udp.Close()
		mc.Close()
		return nil, fmt.Errorf("medialink: media socket beside %s: %w", addr, err)
	}
	// Every path of the endpoint shares the media socket: a node's carries all
	// its streams at once, and a small buffer drops them while it is descheduled.
	_, _, bufErr := sockbuf.Grow(mc, sockbuf.Media)
	var start [4]byte
	_, _ = rand.Read(start[:])
	return &Endpoint{udp: udp, media: media, tr: &quic.Transport{Conn: udp}, paths: map[uint32]*Path{}, lastID: binary.BigEndian.Uint32(start[:]), bufErr: bufErr}, nil
}

// BufferErr says, if the system would not give the media socket the buffers it
// asked for, how small they are and how to raise them; the endpoint works
// either way, with more loss under load. The owner logs it once.
func (e *Endpoint) BufferErr() error { return e.bufErr }

// Addr is the bound UDP address of the QUIC connections.
func (e *Endpoint) Addr() net.Addr { return e.udp.LocalAddr() }

// MediaPort is the UDP port of the media paths, announced to the peer in the
// hello or the ok (Msg.Port).
func (e *Endpoint) MediaPort() uint16 {
	return uint16(e.media.UDPConn().LocalAddr().(*net.UDPAddr).Port)
}

// Listen accepts media links on the endpoint. tlsConf must require client
// certificates (see pki.Identity.ServerTLS); ALPN is set here.
func (e *Endpoint) Listen(tlsConf *tls.Config) (*quic.Listener, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{ALPN}
	ln, err := e.tr.Listen(tc, QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("medialink: listen %s: %w", e.Addr(), err)
	}
	return ln, nil
}

// Dial opens a media link connection to a node from this endpoint.
func (e *Endpoint) Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("medialink: dial %s: %w", addr, err)
	}
	tc := tlsConf.Clone()
	tc.NextProtos = []string{ALPN}
	c, err := e.tr.Dial(ctx, ua, tc, QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("medialink: dial %s: %w", addr, err)
	}
	return c, nil
}

// Serve reads the media socket and hands each packet to its path's receive
// function, on this one goroutine, until ctx ends or the endpoint is closed.
func (e *Endpoint) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = e.media.UDPConn().SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		buf := make([]byte, MaxMediaPacket+1) // the receiver may keep it
		n, err := e.media.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("medialink: read the media socket: %w", err)
		}
		if n < mediaOverhead || n > MaxMediaPacket {
			continue // too short to be sealed, or cut short by the buffer
		}
		// The path id is the one thing read before the packet is authenticated: it
		// says whose keys open it (RATIONALE.md, "Keys and nonces").
		e.mu.Lock()
		p := e.paths[binary.BigEndian.Uint32(buf[1:5])]
		e.mu.Unlock()
		if p != nil {
			p.receive(buf[:n])
		}
	}
}

// Close closes the socket and every connection on it. It is safe to call twice.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		_ = e.tr.Close()
		_ = e.udp.Close()
		_ = e.media.UDPConn().Close()
	})
	return nil
}
