// Package rawudp reads and writes a UDP socket without entering the Go
// scheduler's blocking-syscall state: on Linux with raw non-blocking recvfrom
// and sendto inside the net package's poller (syscall.RawConn), elsewhere with
// net.UDPConn's own methods.
//
// net.UDPConn's reads and writes go through the runtime's entersyscall, and
// the first such call after the process was idle wakes the sysmon thread from
// its deep sleep, which then polls every 20 µs until every P is idle again. A
// relay woken once per packet pays that on every packet: it was ~30% of a node
// process's CPU (internal/medialink/RATIONALE.md, "Its own socket"). Neither
// raw call can block: the socket is non-blocking and the poller waits for it to
// be ready, so deadlines and Close work as with net.UDPConn.
//
// The media link's media sockets, the gateway's ICE sockets (which pion's ICE
// mux reads and writes through PacketConn) and its MoQ socket when bound to
// one address (quic-go, through PacketConn too) use it. RATIONALE.md has the
// measurements.
package rawudp

import (
	"net"
	"net/netip"
	"syscall"
	"time"
)

// PacketConn is c as the net.PacketConn pion's ICE mux takes; it also has
// pion's allocation-free AddrPortReaderWriter methods, which the mux prefers.
type PacketConn interface {
	net.PacketConn
	ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToAddrPort(b []byte, to netip.AddrPort) (int, error)
	SyscallConn() (syscall.RawConn, error)
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
}

// AsPacketConn is c as a PacketConn.
func (c *Conn) AsPacketConn() PacketConn { return packetConn{c} }

type packetConn struct{ c *Conn }

func (p packetConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return p.c.ReadFromAddrPort(b)
}

func (p packetConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return p.c.WriteToAddrPort(b, to)
}

func (p packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := p.c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

func (p packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.InvalidAddrError("not a UDP address")}
	}
	return p.c.WriteToAddrPort(b, ua.AddrPort())
}

func (p packetConn) SyscallConn() (syscall.RawConn, error) { return p.c.conn.SyscallConn() }
func (p packetConn) SetReadBuffer(bytes int) error         { return p.c.conn.SetReadBuffer(bytes) }
func (p packetConn) SetWriteBuffer(bytes int) error        { return p.c.conn.SetWriteBuffer(bytes) }
func (p packetConn) Close() error                          { return p.c.conn.Close() }
func (p packetConn) LocalAddr() net.Addr                   { return p.c.conn.LocalAddr() }
func (p packetConn) SetDeadline(t time.Time) error         { return p.c.conn.SetDeadline(t) }
func (p packetConn) SetReadDeadline(t time.Time) error     { return p.c.conn.SetReadDeadline(t) }
func (p packetConn) SetWriteDeadline(t time.Time) error    { return p.c.conn.SetWriteDeadline(t) }
