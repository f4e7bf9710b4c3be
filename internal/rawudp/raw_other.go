//go:build !linux

package rawudp

import (
	"net"
	"net/netip"
)

// Conn is a UDP socket; outside Linux it uses net.UDPConn's methods (the
// package comment says why Linux does not).
type Conn struct{ conn *net.UDPConn }

// Peer is a peer's address, made once by Conn.Peer and sent to many times.
type Peer struct{ ap netip.AddrPort }

// New wraps c; c stays the owner of the socket.
func New(c *net.UDPConn) (*Conn, error) { return &Conn{conn: c}, nil }

// UDPConn is the wrapped socket.
func (c *Conn) UDPConn() *net.UDPConn { return c.conn }

// Peer makes the address of ap for this socket.
func (c *Conn) Peer(ap netip.AddrPort) (Peer, error) {
	return Peer{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

// Read reads one packet into buf.
func (c *Conn) Read(buf []byte) (int, error) {
	n, _, err := c.conn.ReadFromUDPAddrPort(buf)
	return n, err
}

// ReadFromAddrPort reads one packet and its sender's address.
func (c *Conn) ReadFromAddrPort(buf []byte) (int, netip.AddrPort, error) {
	return c.conn.ReadFromUDPAddrPort(buf)
}

// Send sends b to the peer.
func (c *Conn) Send(b []byte, to *Peer) error {
	_, err := c.conn.WriteToUDPAddrPort(b, to.ap)
	return err
}

// WriteToAddrPort sends b to ap.
func (c *Conn) WriteToAddrPort(b []byte, ap netip.AddrPort) (int, error) {
	return c.conn.WriteToUDPAddrPort(b, ap)
}

// Batch is datagrams waiting to be sent on a Conn; outside Linux, one
// WriteToUDPAddrPort each.
type Batch struct {
	c     *Conn
	bufs  [][]byte
	peers []*Peer
}

// NewBatch makes a batch of at most size datagrams.
func (c *Conn) NewBatch(size int) *Batch {
	return &Batch{c: c, bufs: make([][]byte, 0, size), peers: make([]*Peer, 0, size)}
}

// Len is how many datagrams wait; Cap how many fit.
func (b *Batch) Len() int { return len(b.bufs) }
func (b *Batch) Cap() int { return cap(b.bufs) }

// Add queues p to peer; the batch must not be full.
func (b *Batch) Add(p []byte, to *Peer) {
	b.bufs = append(b.bufs, p)
	b.peers = append(b.peers, to)
}

// Send sends the waiting datagrams from the i-th on; it returns how many
// left, and why the next one did not.
func (b *Batch) Send(i int) (int, error) {
	for k := i; k < len(b.bufs); k++ {
		if err := b.c.Send(b.bufs[k], b.peers[k]); err != nil {
			return k - i, err
		}
	}
	return len(b.bufs) - i, nil
}

// Reset empties the batch.
func (b *Batch) Reset() {
	clear(b.bufs)
	clear(b.peers)
	b.bufs, b.peers = b.bufs[:0], b.peers[:0]
}
