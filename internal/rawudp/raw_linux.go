package rawudp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// Conn is a UDP socket read and written with raw non-blocking system calls.
type Conn struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	inet6 bool // AF_INET6 (dual stack); otherwise AF_INET
}

// Peer is a peer's address as the socket's sockaddr, made once by Conn.Peer
// and sent to many times.
type Peer struct {
	sa  [syscall.SizeofSockaddrInet6]byte
	len uintptr
}

// New wraps c; c stays the owner of the socket (Close it to close).
func New(c *net.UDPConn) (*Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("rawudp: %w", err)
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("rawudp: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("rawudp: socket domain: %w", serr)
	}
	return &Conn{conn: c, rc: rc, inet6: domain == syscall.AF_INET6}, nil
}

// UDPConn is the wrapped socket.
func (c *Conn) UDPConn() *net.UDPConn { return c.conn }

// Peer makes the sockaddr of ap for this socket: an IPv4 address on an IPv6
// socket becomes ::ffff:a.b.c.d; an IPv6 one on an IPv4 socket is refused.
func (c *Conn) Peer(ap netip.AddrPort) (Peer, error) {
	var p Peer
	a := ap.Addr().Unmap()
	if !c.inet6 {
		if !a.Is4() {
			return p, fmt.Errorf("rawudp: peer %s is not IPv4 like the socket", ap)
		}
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&p.sa[0]))
		sa.Family = syscall.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		sa.Addr = a.As4()
		p.len = syscall.SizeofSockaddrInet4
		return p, nil
	}
	sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&p.sa[0]))
	sa.Family = syscall.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = a.As16()
	p.len = syscall.SizeofSockaddrInet6
	return p, nil
}

// Read reads one packet into buf, waiting for one if none is queued; the
// sender's address is not asked for.
func (c *Conn) Read(buf []byte) (int, error) {
	n, _, err := c.recv(buf, nil)
	return n, err
}

// ReadFromAddrPort reads one packet and its sender's address.
func (c *Conn) ReadFromAddrPort(buf []byte) (int, netip.AddrPort, error) {
	from := new(syscall.RawSockaddrAny)
	n, fromLen, err := c.recv(buf, from)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	return n, addrPort(from, fromLen), nil
}

// recv reads one packet, and its sender's sockaddr into from when from is
// not nil. Every pointer is converted in the system call's argument list, the
// one place where the compiler keeps its object alive and in place.
func (c *Conn) recv(buf []byte, from *syscall.RawSockaddrAny) (int, uint32, error) {
	if len(buf) == 0 {
		return 0, 0, errors.New("rawudp: read into an empty buffer")
	}
	var n uintptr
	var errno syscall.Errno
	fromLen := new(uint32)
	*fromLen = syscall.SizeofSockaddrAny
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			if from != nil {
				n, _, errno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
					syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(fromLen)))
			} else {
				n, _, errno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
					syscall.MSG_DONTWAIT, 0, 0)
			}
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	})
	if err != nil {
		return 0, 0, err
	}
	if errno != 0 {
		return 0, 0, &net.OpError{Op: "read", Net: "udp", Source: c.conn.LocalAddr(), Err: errno}
	}
	return int(n), *fromLen, nil
}

// addrPort reads a sockaddr the kernel wrote; an unknown family gives the
// zero AddrPort.
func addrPort(sa *syscall.RawSockaddrAny, n uint32) netip.AddrPort {
	switch {
	case sa.Addr.Family == syscall.AF_INET && n >= syscall.SizeofSockaddrInet4:
		s4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case sa.Addr.Family == syscall.AF_INET6 && n >= syscall.SizeofSockaddrInet6:
		s6 := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s6.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(s6.Addr), port)
	}
	return netip.AddrPort{}
}

// Send sends b to the peer, waiting only if the socket's send buffer is full.
func (c *Conn) Send(b []byte, to *Peer) error {
	var errno syscall.Errno
	if len(b) == 0 {
		b = make([]byte, 1)[:0:1]
	}
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&to.sa[0])), to.len)
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return &net.OpError{Op: "write", Net: "udp", Source: c.conn.LocalAddr(), Err: errno}
	}
	return nil
}

// WriteToAddrPort sends b to ap.
func (c *Conn) WriteToAddrPort(b []byte, ap netip.AddrPort) (int, error) {
	p, err := c.Peer(ap)
	if err != nil {
		return 0, err
	}
	if err := c.Send(b, &p); err != nil {
		return 0, err
	}
	return len(b), nil
}
