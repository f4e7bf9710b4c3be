package sockbuf

import (
	"net"
	"syscall"
	"testing"
)

func rcvbuf(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rc.Control(func(fd uintptr) { n, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) }); err != nil {
		t.Fatal(err)
	}
	return n
}

// A media socket gets the buffer asked for, or an error that says how to get
// it; what Grow reports is what the kernel holds.
func TestGrowGivesTheMediaBufferOrSaysWhy(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := rcvbuf(t, c)
	rcv, snd, err := Grow(c, Media)
	if got := rcvbuf(t, c); got != rcv {
		t.Fatalf("Grow reported a receive buffer of %d bytes, the socket has %d", rcv, got)
	}
	if err != nil {
		if rcv >= Media && snd >= Media {
			t.Fatalf("an error with buffers of %d/%d bytes, %d asked: %v", rcv, snd, Media, err)
		}
		t.Logf("buffers limited by the system (%v); started at %d", err, before)
		return
	}
	if rcv < Media || snd < Media {
		t.Fatalf("no error, yet buffers of %d/%d bytes, %d asked", rcv, snd, Media)
	}
}
