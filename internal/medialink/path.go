package medialink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// NewPath registers the media path of a link about to be opened (gateway) or
// just accepted (node). fn, if not nil, is called with every RTP packet that
// arrives on the path, framed as a datagram is (header byte and payload), on the
// endpoint's Serve goroutine; it must not block long, and it may keep p. The path
// neither sends nor receives until Connect.
//
// Path ids count up from a random start, so an endpoint gives the same id again
// only after 2^32 paths: the keys of a path are bound to its id (RATIONALE.md,
// "Keys and nonces").
func (e *Endpoint) NewPath(fn func(p []byte)) *Path {
	p := &Path{e: e, fn: fn}
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		e.lastID++
		if e.lastID != 0 && e.paths[e.lastID] == nil {
			p.id = e.lastID
			e.paths[p.id] = p
			return p
		}
	}
}

// Path is the media path of one link: RTP packets sealed with AES-128-GCM under
// keys derived from the link's TLS 1.3 handshake and bound to both ends' path
// ids and the direction (so only the two authenticated ends can make or read
// them, and no two paths share a key), with a replay window, and no
// acknowledgements — loss is repaired by NACK and keyframe requests, as on the
// datagrams.
type Path struct {
	e  *Endpoint
	id uint32
	fn func([]byte)

	// st is nil until Connect and a closed state after Close; Connect installs
	// it once, so a path's keys and its sequence numbers start together once.
	st atomic.Pointer[pathState]
}

// ID is the path id to announce to the peer (the hello's or the ok's Path).
func (p *Path) ID() uint32 { return p.id }

// errConnected is returned by a second Path.Connect, or one after Close: a
// path's keys are bound to it for life, so its sequence numbers may not start
// again.
var errConnected = errors.New("medialink: media path already connected or closed")

// Connect binds the path to its link: c is the established QUIC connection, peer
// and port the path id and media port the other end announced (Msg.Path and
// Msg.Port), and client says whether this end dialled. A path connects once.
func (p *Path) Connect(c *quic.Conn, peer uint32, port uint16, client bool) error {
	if peer == 0 || port == 0 {
		return fmt.Errorf("%w: no media path id or port from the peer", ErrProtocol)
	}
	if p.st.Load() != nil {
		return errConnected
	}
	ra, ok := c.RemoteAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("%w: link on %T, not UDP", ErrProtocol, c.RemoteAddr())
	}
	to, err := p.e.media.Peer(netip.AddrPortFrom(ra.AddrPort().Addr(), port))
	if err != nil {
		return err
	}
	cs := c.ConnectionState().TLS
	out, err := exportSecret(&cs, client, p.id, peer)
	if err != nil {
		return err
	}
	in, err := exportSecret(&cs, !client, peer, p.id)
	if err != nil {
		return err
	}
	st, err := newPathState(to, peer, out, in)
	if err != nil {
		return err
	}
	if !p.st.CompareAndSwap(nil, st) {
		return errConnected
	}
	return nil
}

// ErrTooLarge is returned by Path.Send for a packet that does not fit a media
// packet; send it on the link (Send) instead.
var ErrTooLarge = errors.New("medialink: packet too large for the media path")

// errNotConnected is returned by Path.Send before Connect or after Close.
var errNotConnected = errors.New("medialink: media path not connected")

// sendBuf is the scratch space of one Send: the packet and its nonce.
type sendBuf struct {
	b     [MaxMediaPacket]byte
	nonce [12]byte
}

var sendBufs = sync.Pool{New: func() any { return new(sendBuf) }}

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
	sb := sendBufs.Get().(*sendBuf)
	defer sendBufs.Put(sb)
	b, err := st.seal(sb.b[:0], &sb.nonce, pkt)
	if err != nil {
		return err
	}
	return p.e.media.Send(b, &st.to)
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
// endpoint's Serve goroutine. It authenticates first: before the tag is checked
// only the sequence number is read, to pick the key epoch and make the nonce; the
// replay window, the header and the payload are looked at only once the packet is
// known to come from the peer. b is opened in place and may be kept by fn.
func (p *Path) receive(b []byte) {
	st := p.st.Load()
	if st == nil || st.closed || p.fn == nil {
		return
	}
	frame, ok := st.open(b)
	if !ok {
		return
	}
	if frame[0]>>4 != TypeRTP || len(frame) < 1+12 {
		return // authentic, but not RTP (as ParsePacket has it): a peer's bug
	}
	p.fn(frame)
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
