package fanout

import (
	"net/netip"
	"testing"
)

// A selected pair's local candidate names the socket to send from; one whose
// address gateway.iceHosts rewrote (pion's 1:1 NAT mapping) names no bound
// address, and must still find the socket of its port and family that can
// reach the remote, or every WHEP viewer behind such a mapping is ended.
func TestAViewersPacketsLeaveFromTheSocketItsCandidateCameFrom(t *testing.T) {
	mk := func(addr string) *Socket { return &Socket{local: netip.MustParseAddrPort(addr)} }
	lo, eth, v6 := mk("127.0.0.1:8189"), mk("10.1.2.3:8189"), mk("[fd00::3]:8189")
	g := &Group{cfg: Config{Sockets: []*Socket{lo, eth, v6}}}
	remote := netip.MustParseAddrPort("198.51.100.7:50000")
	for _, c := range []struct {
		name          string
		local, remote string
		want          *Socket
	}{
		{"a bound address", "10.1.2.3:8189", "198.51.100.7:50000", eth},
		{"loopback", "127.0.0.1:8189", "127.0.0.1:50000", lo},
		{"an advertised public address, a remote peer", "203.0.113.9:8189", remote.String(), eth},
		{"an advertised address, a peer on this machine", "203.0.113.9:8189", "127.0.0.1:50000", lo},
		{"IPv6", "[fd00::3]:8189", "[fd00::9]:50000", v6},
		{"another port", "10.1.2.3:9999", remote.String(), nil},
	} {
		if got := g.socket(netip.MustParseAddrPort(c.local), netip.MustParseAddrPort(c.remote)); got != c.want {
			t.Errorf("%s (%s → %s): socket %v, want %v", c.name, c.local, c.remote, got, c.want)
		}
	}
	wild := mk("0.0.0.0:8189")
	g = &Group{cfg: Config{Sockets: []*Socket{wild}}}
	if got := g.socket(netip.MustParseAddrPort("203.0.113.9:8189"), remote); got != wild {
		t.Errorf("a socket on the unspecified address takes every candidate of its port; got %v", got)
	}
}
