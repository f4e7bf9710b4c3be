package whip

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/logging"
	"github.com/sluicegw/sluice/internal/rawudp"
)

func TestParseBindTellsTheThreeScopesApartAndRefusesANonAddress(t *testing.T) {
	for _, c := range []struct {
		bind string
		want bindScope
	}{{"", scopeThisMachine}, {"0.0.0.0", scopeEvery}, {"::", scopeEvery}, {"127.0.0.1", scopeOne}, {"10.1.2.3", scopeOne}} {
		if got, _, err := parseBind(c.bind); err != nil || got != c.want {
			t.Errorf("parseBind(%q) = %v, %v; want %v", c.bind, got, err, c.want)
		}
	}
	if _, _, err := parseBind("eth0"); err == nil || !strings.Contains(err.Error(), `iceBind "eth0"`) {
		t.Errorf("parseBind(eth0): %v, want an error naming iceBind", err)
	}
}

// The default binds every address of the machine on one port number, loopback
// first, so that `sluice dev` prints a loopback ICE address and a peer on any
// local interface has a candidate on its own interface.
func TestThisMachineBindsOnePortOnEveryLocalAddressLoopbackFirst(t *testing.T) {
	p, err := listenICE(Config{ICEUDPPort: -1}, logging.NewDefaultLoggerFactory())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.loopback || len(p.addrs) == 0 || !p.addrs[0].(*net.UDPAddr).IP.IsLoopback() {
		t.Fatalf("bound %v (loopback candidates %v), want loopback first and offered", p.addrs, p.loopback)
	}
	want, _ := machineAddrs()
	if len(p.addrs) != len(want) {
		t.Fatalf("bound %v, want every address of %v", p.addrs, want)
	}
	port := p.addrs[0].(*net.UDPAddr).Port
	for _, a := range p.addrs {
		if a.(*net.UDPAddr).Port != port {
			t.Fatalf("bound %v: not one port", p.addrs)
		}
	}
}

// fakeConn delivers queued packets from given sources.
type fakeConn struct {
	rawudp.PacketConn
	from []netip.AddrPort
}

func (f *fakeConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if len(f.from) == 0 {
		return 0, netip.AddrPort{}, net.ErrClosed
	}
	a := f.from[0]
	f.from = f.from[1:]
	return copy(b, "x"), a, nil
}

// Both of the ways pion's mux reads (ReadFromAddrPort, and ReadFrom for a
// conn without it) take only this machine's packets.
func TestLocalOnlyConnDropsPacketsFromOtherMachines(t *testing.T) {
	own, _ := machineAddrs()
	other := netip.MustParseAddrPort("198.51.100.7:5000")
	local := netip.AddrPortFrom(own[len(own)-1], 5001)
	loop := netip.MustParseAddrPort("127.0.0.1:5002")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(other.Addr().As16()), 5003) // ::ffff:198.51.100.7
	for _, byAddrPort := range []bool{true, false} {
		set := map[netip.AddrPort]bool{}
		c := &localOnlyConn{PacketConn: &fakeConn{from: []netip.AddrPort{other, local, mapped, other, loop}}, own: toSet(own)}
		buf := make([]byte, 8)
		for {
			var ap netip.AddrPort
			var err error
			if byAddrPort {
				_, ap, err = c.ReadFromAddrPort(buf)
			} else {
				var a net.Addr
				if _, a, err = c.ReadFrom(buf); err == nil {
					ap = a.(*net.UDPAddr).AddrPort()
				}
			}
			if err != nil {
				break
			}
			set[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = true
		}
		if set[other] || set[netip.AddrPortFrom(other.Addr(), 5003)] || !set[local] || !set[loop] {
			t.Fatalf("read packets from %v (ReadFromAddrPort: %v); want %s and %s, never %s", set, byAddrPort, local, loop, other.Addr())
		}
	}
}

// An explicit unspecified bind takes every interface (pion's multi mux), one
// port number, and offers no loopback candidate.
func TestEveryInterfaceBindsOnePortWithoutLoopbackCandidates(t *testing.T) {
	p, err := listenICE(Config{ICEUDPPort: -1, ICEBind: "0.0.0.0"}, logging.NewDefaultLoggerFactory())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.loopback {
		t.Fatal("an unspecified bind offers loopback candidates")
	}
	port := 0
	for _, a := range p.addrs {
		ua := a.(*net.UDPAddr)
		if ua.IP.IsLoopback() || ua.IP.IsUnspecified() || ua.IP.To4() == nil {
			t.Fatalf("bound %v: want IPv4 interface addresses only", p.addrs)
		}
		if port != 0 && ua.Port != port {
			t.Fatalf("bound %v: not one port", p.addrs)
		}
		port = ua.Port
	}
}
