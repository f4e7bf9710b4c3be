// Package sockbuf sizes the kernel buffers of the UDP sockets that carry media.
//
// A socket's receive buffer is what a packet waits in while the process that
// reads it is not running. Linux's default (net.core.rmem_default, 208 KiB) holds
// ~170 packets of 1,200 bytes: 20 ms of the 50 pushed streams a node or a
// gateway relays at once, less than one scheduling hiccup on a busy machine, and
// every packet past it is dropped by the kernel before sluice sees it
// (`sluice bench --pushes 50` counted tens of thousands). quic-go sizes its own
// sockets the same way for the same reason.
package sockbuf

import (
	"fmt"
	"net"
)

// Media is the size asked for a media socket's receive and send buffers:
// ~3,400 packets of 1,200 bytes, 400 ms of 8,500 packets a second.
const Media = 4 << 20

// Grow asks for at least want bytes of receive and send buffer on c, beyond the
// sysctl limits (net.core.rmem_max, wmem_max) where the process may do so, and
// returns what the kernel gave (Linux reports twice what it accounts). An error
// says only that the buffers are smaller than asked, and how to raise them: the
// socket works either way.
func Grow(c *net.UDPConn, want int) (rcv, snd int, err error) {
	rcv, snd, err = grow(c, want)
	if err != nil {
		return rcv, snd, fmt.Errorf("sockbuf: %w", err)
	}
	if rcv < want || snd < want {
		return rcv, snd, fmt.Errorf("sockbuf: UDP buffers of %s are %d (receive) and %d (send) bytes, %d asked: raise net.core.rmem_max and net.core.wmem_max to %d, or run with CAP_NET_ADMIN",
			c.LocalAddr(), rcv, snd, want, want)
	}
	return rcv, snd, nil
}
