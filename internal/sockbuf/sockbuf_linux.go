package sockbuf

import (
	"net"
	"syscall"
)

// grow sets SO_RCVBUF and SO_SNDBUF, which the kernel caps at the sysctl
// limits, then SO_RCVBUFFORCE and SO_SNDBUFFORCE, which pass them with
// CAP_NET_ADMIN (and fail without it, harmlessly).
func grow(c *net.UDPConn, want int) (rcv, snd int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var gerr error
	cerr := rc.Control(func(fd uintptr) {
		s := int(fd)
		for _, o := range [][2]int{{syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE}, {syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE}} {
			if got, _ := syscall.GetsockoptInt(s, syscall.SOL_SOCKET, o[0]); got >= want {
				continue
			}
			_ = syscall.SetsockoptInt(s, syscall.SOL_SOCKET, o[0], want)
			if got, _ := syscall.GetsockoptInt(s, syscall.SOL_SOCKET, o[0]); got < want {
				_ = syscall.SetsockoptInt(s, syscall.SOL_SOCKET, o[1], want)
			}
		}
		rcv, gerr = syscall.GetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if gerr == nil {
			snd, gerr = syscall.GetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		}
	})
	if cerr != nil {
		return 0, 0, cerr
	}
	return rcv, snd, gerr
}
