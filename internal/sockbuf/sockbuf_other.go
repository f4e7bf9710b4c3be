//go:build !linux

package sockbuf

import "net"

// grow asks through the net package; the sizes cannot be read back portably,
// so what was asked is reported.
func grow(c *net.UDPConn, want int) (rcv, snd int, err error) {
	if err := c.SetReadBuffer(want); err != nil {
		return 0, 0, err
	}
	if err := c.SetWriteBuffer(want); err != nil {
		return want, 0, err
	}
	return want, want, nil
}
