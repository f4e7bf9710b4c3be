package medialink

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// mediaSocket is the media socket of an Endpoint. On Linux it reads and writes
// with raw non-blocking recvfrom and sendto inside the net package's poller
// (syscall.RawConn), instead of net.UDPConn's methods: those enter the scheduler's
// blocking-syscall state, and the first such call after the process was idle
// wakes the runtime's sysmon thread, which then polls every 20 µs until the
// process is idle again — a node relaying one packet at a time spent ~30% of
// its CPU there (RATIONALE.md, "Its own socket"). Neither call can block: the
// socket is non-blocking and the poller waits for it to be ready.
type mediaSocket struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	inet6 bool // AF_INET6 (dual stack); otherwise AF_INET
}

// mediaPeer is a peer's media address, as the socket's sockaddr.
type mediaPeer struct {
	sa  [syscall.SizeofSockaddrInet6]byte
	len uintptr
}

func newMediaSocket(c *net.UDPConn) (*mediaSocket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	return &mediaSocket{conn: c, rc: rc, inet6: domain == syscall.AF_INET6}, nil
}

// peer makes the sockaddr of a peer's media address for this socket.
func (s *mediaSocket) peer(ap netip.AddrPort) (mediaPeer, error) {
	var p mediaPeer
	a := ap.Addr().Unmap()
	if !s.inet6 {
		if !a.Is4() {
			return p, fmt.Errorf("medialink: media peer %s is not IPv4 like the socket", ap)
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
	sa.Addr = a.As16() // an IPv4 address becomes ::ffff:a.b.c.d
	p.len = syscall.SizeofSockaddrInet6
	return p, nil
}

// read reads one packet into buf, waiting for one if none is queued.
func (s *mediaSocket) read(buf []byte) (int, error) {
	var n uintptr
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), syscall.MSG_DONTWAIT, 0, 0)
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// write sends b to the peer, waiting only if the socket's send buffer is full.
func (s *mediaSocket) write(b []byte, to *mediaPeer) error {
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&to.sa[0])), to.len)
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}
