package rawudp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) (*Conn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %s socket here: %v", network, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// What one socket sends the other reads, with the sender's address, through
// every method: Send to a Peer, WriteToAddrPort, and pion's PacketConn view.
func TestPacketsArriveWithTheSendersAddressOnIPv4AndIPv6(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			a, aAddr := listen(t, tc.network, tc.addr)
			b, bAddr := listen(t, tc.network, tc.addr)
			peer, err := a.Peer(bAddr)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Send([]byte("one"), &peer); err != nil {
				t.Fatal(err)
			}
			if _, err := a.WriteToAddrPort([]byte("two"), bAddr); err != nil {
				t.Fatal(err)
			}
			if _, err := a.AsPacketConn().WriteTo([]byte("three"), net.UDPAddrFromAddrPort(bAddr)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			_ = b.UDPConn().SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := b.Read(buf)
			if err != nil || string(buf[:n]) != "one" {
				t.Fatalf("Read = %q, %v; want one", buf[:n], err)
			}
			n, from, err := b.ReadFromAddrPort(buf)
			if err != nil || string(buf[:n]) != "two" || from != aAddr {
				t.Fatalf("ReadFromAddrPort = %q from %s, %v; want two from %s", buf[:n], from, err, aAddr)
			}
			n, fromAddr, err := b.AsPacketConn().ReadFrom(buf)
			if err != nil || string(buf[:n]) != "three" || fromAddr.(*net.UDPAddr).AddrPort() != aAddr {
				t.Fatalf("ReadFrom = %q from %v, %v; want three from %s", buf[:n], fromAddr, err, aAddr)
			}
		})
	}
}

// An IPv4 peer of a dual-stack socket is reached through its mapped address,
// and an IPv6 peer of an IPv4 socket is refused with an error, not sent to.
func TestPeersAreMadeForTheSocketsFamily(t *testing.T) {
	v4, v4Addr := listen(t, "udp4", "127.0.0.1:0")
	dual, _ := listen(t, "udp", "[::]:0")
	if _, err := v4.Peer(netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Fatal("an IPv4 socket made a peer of an IPv6 address")
	}
	if _, err := dual.WriteToAddrPort([]byte("x"), v4Addr); err != nil {
		t.Fatalf("a dual-stack socket cannot send to %s: %v", v4Addr, err)
	}
	buf := make([]byte, 4)
	_ = v4.UDPConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := v4.Read(buf); err != nil || n != 1 {
		t.Fatalf("the IPv4 socket read %d bytes, %v", n, err)
	}
}

// Deadlines and Close end a waiting read as they do with net.UDPConn: pion's
// mux relies on both.
func TestAWaitingReadEndsAtItsDeadlineAndAtClose(t *testing.T) {
	c, _ := listen(t, "udp4", "127.0.0.1:0")
	_ = c.UDPConn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := c.ReadFromAddrPort(make([]byte, 8)); !os.IsTimeout(err) {
		t.Fatalf("read past its deadline = %v, want a timeout", err)
	}
	_ = c.UDPConn().SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = c.AsPacketConn().Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
}

// One Send of a batch delivers every datagram to its own peer, in order, and
// the batch is empty and reusable after Reset.
func TestABatchDeliversEachDatagramToItsPeer(t *testing.T) {
	tx, _ := listen(t, "udp4", "127.0.0.1:0")
	rx1, a1 := listen(t, "udp4", "127.0.0.1:0")
	rx2, a2 := listen(t, "udp4", "127.0.0.1:0")
	p1, _ := tx.Peer(a1)
	p2, _ := tx.Peer(a2)
	b := tx.NewBatch(4)
	for round := range 2 {
		b.Add([]byte("a"), &p1)
		b.Add([]byte("b"), &p2)
		b.Add([]byte("c"), &p1)
		if n, err := b.Send(0); n != 3 || err != nil {
			t.Fatalf("round %d: Send = %d, %v; want 3 sent", round, n, err)
		}
		b.Reset()
		if b.Len() != 0 {
			t.Fatalf("round %d: %d datagrams wait after Reset", round, b.Len())
		}
		buf := make([]byte, 4)
		for _, want := range []struct {
			rx   *Conn
			data string
		}{{rx1, "a"}, {rx1, "c"}, {rx2, "b"}} {
			_ = want.rx.UDPConn().SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := want.rx.Read(buf)
			if err != nil || string(buf[:n]) != want.data {
				t.Fatalf("round %d: read %q, %v; want %q", round, buf[:n], err, want.data)
			}
		}
	}
}
