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
