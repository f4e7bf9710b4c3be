//go:build !linux

package medialink

import (
	"net"
	"net/netip"
)

// mediaSocket is the media socket of an Endpoint; outside Linux it uses
// net.UDPConn's methods (see mediasock_linux.go for why Linux does not).
type mediaSocket struct{ conn *net.UDPConn }

type mediaPeer struct{ ap netip.AddrPort }

func newMediaSocket(c *net.UDPConn) (*mediaSocket, error) { return &mediaSocket{conn: c}, nil }

func (s *mediaSocket) peer(ap netip.AddrPort) (mediaPeer, error) {
	return mediaPeer{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

func (s *mediaSocket) read(buf []byte) (int, error) {
	n, _, err := s.conn.ReadFromUDPAddrPort(buf)
	return n, err
}

func (s *mediaSocket) write(b []byte, to *mediaPeer) error {
	_, err := s.conn.WriteToUDPAddrPort(b, to.ap)
	return err
}
