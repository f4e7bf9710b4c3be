package medialink

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Media packet layout on the wire (RATIONALE.md, "The media path"):
//
//	[1] header (packet type and track, as in a datagram)
//	[4] path id the receiver chose
//	[8] sequence number of the sender, the AEAD nonce
//	[n] sealed payload and a 16-byte tag; header, id and sequence are authenticated
const (
	mediaPrefix   = 1 + 4 + 8
	mediaOverhead = mediaPrefix + 16
	// MaxMediaPacket is the largest UDP payload a media packet may use: the same
	// 1452 bytes as the QUIC packets of the link, safe on a 1500-byte MTU.
	MaxMediaPacket = 1452
	// replayWindow is how far behind the newest sequence number a packet may arrive.
	replayWindow  = 64
	exporterLabel = "EXPORTER-sluice-media-path"
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

	mu    sync.Mutex
	paths map[uint32]*Path

	closeOnce sync.Once
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
	return &Endpoint{udp: udp, media: media, tr: &quic.Transport{Conn: udp}, paths: map[uint32]*Path{}}, nil
}

// Addr is the bound UDP address of the QUIC connections.
func (e *Endpoint) Addr() net.Addr { return e.udp.LocalAddr() }

// MediaPort is the UDP port of the media paths, announced to the peer in the
// hello or the ok (Msg.Port).
func (e *Endpoint) MediaPort() uint16 { return uint16(e.media.conn.LocalAddr().(*net.UDPAddr).Port) }

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
	stop := context.AfterFunc(ctx, func() { _ = e.media.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		buf := make([]byte, MaxMediaPacket+1) // the receiver may keep it
		n, err := e.media.read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("medialink: read the media socket: %w", err)
		}
		if n < mediaOverhead+1+12 || n > MaxMediaPacket {
			continue
		}
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
		_ = e.media.conn.Close()
	})
	return nil
}

// NewPath registers the media path of a link about to be opened (gateway) or
// just accepted (node). fn, if not nil, is called with every RTP packet that
// arrives on the path, framed as a datagram is (header byte and payload), on the
// endpoint's Serve goroutine; it must not block long, and it may keep p. The path
// neither sends nor receives until Connect.
func (e *Endpoint) NewPath(fn func(p []byte)) *Path {
	p := &Path{e: e, fn: fn}
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id := binary.BigEndian.Uint32(b[:])
		if id != 0 && e.paths[id] == nil {
			p.id = id
			e.paths[id] = p
			return p
		}
	}
}

// Path is the media path of one link: RTP packets sealed with AES-128-GCM under
// keys exported from the link's TLS 1.3 handshake (so only the two authenticated
// ends can make or read them), with a replay window, and no acknowledgements —
// loss is repaired by NACK and keyframe requests, as on the datagrams before.
type Path struct {
	e  *Endpoint
	id uint32
	fn func([]byte)

	st atomic.Pointer[pathState]

	// receive side, touched only by the endpoint's Serve goroutine
	top  uint64
	seen uint64 // bit i: top-i was received
}

type pathState struct {
	to     mediaPeer // the peer's media socket
	peer   uint32
	seal   cipher.AEAD
	open   cipher.AEAD
	next   atomic.Uint64
	closed bool
}

// ID is the path id to announce to the peer (the hello's or the ok's Path).
func (p *Path) ID() uint32 { return p.id }

// Connect binds the path to its link: c is the established QUIC connection, peer
// and port the path id and media port the other end announced (Msg.Path and
// Msg.Port), and client says whether this end dialled.
func (p *Path) Connect(c *quic.Conn, peer uint32, port uint16, client bool) error {
	if peer == 0 || port == 0 {
		return fmt.Errorf("%w: no media path id or port from the peer", ErrProtocol)
	}
	ra, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("%w: link on %T, not UDP", ErrProtocol, c.RemoteAddr())
	}
	cs := c.ConnectionState().TLS
	km, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return fmt.Errorf("medialink: media keys: %w", err)
	}
	out, in := km[:16], km[16:]
	if !client {
		out, in = in, out
	}
	to, err := p.e.media.peer(netip.AddrPortFrom(ra.AddrPort().Addr(), port))
	if err != nil {
		return err
	}
	st := &pathState{to: to, peer: peer}
	if st.seal, err = newGCM(out); err != nil {
		return err
	}
	if st.open, err = newGCM(in); err != nil {
		return err
	}
	p.st.Store(st)
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ErrTooLarge is returned by Path.Send for a packet that does not fit a media
// packet; send it on the link (Send) instead.
var ErrTooLarge = errors.New("medialink: packet too large for the media path")

// errNotConnected is returned by Path.Send before Connect or after Close.
var errNotConnected = errors.New("medialink: media path not connected")

var sendBufs = sync.Pool{New: func() any { return new([MaxMediaPacket]byte) }}

// Send seals one framed RTP packet (header byte and payload, as for a datagram)
// and writes it to the peer from the calling goroutine. p is not retained. It
// may be called from several goroutines at once.
func (p *Path) Send(pkt []byte) error {
	st := p.st.Load()
	if st == nil || st.closed {
		return errNotConnected
	}
	if len(pkt) < 1 || len(pkt)-1+mediaOverhead > MaxMediaPacket {
		return ErrTooLarge
	}
	bp := sendBufs.Get().(*[MaxMediaPacket]byte)
	defer sendBufs.Put(bp)
	b := bp[:mediaPrefix]
	b[0] = pkt[0]
	binary.BigEndian.PutUint32(b[1:5], st.peer)
	binary.BigEndian.PutUint64(b[5:13], st.next.Add(1))
	var nonce [12]byte
	copy(nonce[4:], b[5:13])
	b = st.seal.Seal(b, nonce[:], pkt[1:], b[:mediaPrefix])
	return p.e.media.write(b, &st.to)
}

// SendRTP sends one framed RTP packet on the media path, or on the link c when
// it is too large for the path (the link carries it on a short stream).
func (p *Path) SendRTP(c *quic.Conn, pkt []byte) error {
	err := p.Send(pkt)
	if errors.Is(err, ErrTooLarge) {
		return Send(c, pkt)
	}
	return err
}

// receive opens a media packet for this path and passes it on; it runs on the
// endpoint's Serve goroutine.
func (p *Path) receive(b []byte) {
	st := p.st.Load()
	if st == nil || st.closed || p.fn == nil || b[0]>>4 != TypeRTP {
		return
	}
	seq := binary.BigEndian.Uint64(b[5:13])
	if seq == 0 || seq+replayWindow <= p.top || seq <= p.top && p.seen&(1<<(p.top-seq)) != 0 {
		return // too old or a replay
	}
	var nonce [12]byte
	copy(nonce[4:], b[5:13])
	plain, err := st.open.Open(b[mediaPrefix:mediaPrefix], nonce[:], b[mediaPrefix:], b[:mediaPrefix])
	if err != nil {
		return
	}
	if seq > p.top {
		if d := seq - p.top; d < replayWindow {
			p.seen = p.seen<<d | 1
		} else {
			p.seen = 1
		}
		p.top = seq
	} else {
		p.seen |= 1 << (p.top - seq)
	}
	// Frame it as a datagram: the header byte just before the payload.
	b[mediaPrefix-1] = b[0]
	p.fn(b[mediaPrefix-1 : mediaPrefix+len(plain)])
}

// Close unregisters the path; later packets in either direction are dropped. It
// is safe to call twice.
func (p *Path) Close() {
	p.st.Store(&pathState{closed: true})
	p.e.mu.Lock()
	if p.e.paths[p.id] == p {
		delete(p.e.paths, p.id)
	}
	p.e.mu.Unlock()
}
