package whip

import (
	"net"
	"strings"
	"testing"

	"github.com/pion/logging"
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
	net.PacketConn
	from []net.Addr
}

func (f *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if len(f.from) == 0 {
		return 0, nil, net.ErrClosed
	}
	a := f.from[0]
	f.from = f.from[1:]
	return copy(b, "x"), a, nil
}

func TestLocalOnlyConnDropsPacketsFromOtherMachines(t *testing.T) {
	own, _ := machineAddrs()
	other := &net.UDPAddr{IP: net.ParseIP("198.51.100.7"), Port: 5000}
	local := &net.UDPAddr{IP: own[len(own)-1].AsSlice(), Port: 5001}
	loop := &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5002}
	set := map[string]bool{}
	c := &localOnlyConn{PacketConn: &fakeConn{from: []net.Addr{other, local, other, loop}}, own: toSet(own)}
	buf := make([]byte, 8)
	for {
		_, a, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		set[a.String()] = true
	}
	if set[other.String()] || !set[local.String()] || !set[loop.String()] {
		t.Fatalf("read packets from %v; want %s and %s, never %s", set, local, loop, other)
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
