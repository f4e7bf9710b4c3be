package whip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
)

// icePort is the gateway's one ICE UDP port: the sockets bound on it, as
// Config.ICEBind says, and the mux that hands their packets to sessions by ICE
// username. Every listen address of the mux is offered as a host candidate
// (RATIONALE.md says which and why).
type icePort struct {
	mux      ice.UDPMux
	addrs    []net.Addr // the bound addresses, loopback first when bound
	loopback bool       // loopback addresses are among the candidates
}

// bindScope is what an ICEBind value asks for.
type bindScope int

const (
	scopeThisMachine bindScope = iota // "": every local address, peers on this machine only
	scopeEvery                        // 0.0.0.0 or ::: every interface, any peer
	scopeOne                          // one address, any peer
)

func parseBind(bind string) (bindScope, net.IP, error) {
	if bind == "" {
		return scopeThisMachine, nil, nil
	}
	ip := net.ParseIP(bind)
	if ip == nil {
		return 0, nil, fmt.Errorf("iceBind %q is not an IP address (want one address, 0.0.0.0, :: or empty for this machine)", bind)
	}
	if ip.IsUnspecified() {
		return scopeEvery, ip, nil
	}
	return scopeOne, ip, nil
}

// listenICE binds the ICE port. A negative port picks a free one (tests): the
// same number on every address, so that the gateway still has one ICE port.
func listenICE(cfg Config, lf logging.LoggerFactory) (*icePort, error) {
	scope, ip, err := parseBind(cfg.ICEBind)
	if err != nil {
		return nil, err
	}
	log := lf.NewLogger("ice-mux")
	switch scope {
	case scopeOne:
		udp, err := net.ListenPacket("udp", net.JoinHostPort(ip.String(), strconv.Itoa(max(cfg.ICEUDPPort, 0))))
		if err != nil {
			return nil, fmt.Errorf("whip: ICE port: %w", err)
		}
		return onePort(udp, log), nil
	case scopeEvery:
		return everyInterface(cfg.ICEUDPPort, ip.To4() != nil, log)
	default:
		return thisMachine(cfg.ICEUDPPort, log)
	}
}

// onePort is the mux of one bound socket.
func onePort(udp net.PacketConn, log logging.LeveledLogger) *icePort {
	a, _ := udp.LocalAddr().(*net.UDPAddr)
	return &icePort{mux: ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: log, UDPConn: udp}),
		addrs: []net.Addr{udp.LocalAddr()}, loopback: a != nil && a.IP.IsLoopback()}
}

// everyInterface binds the port on every interface address (pion's
// NewMultiUDPMuxFromPort: a socket bound to the unspecified address would
// answer from whichever address the kernel picks, not the candidate's).
// Loopback is left out, as pion leaves it out: a remote peer would only try
// its own loopback. v4only keeps it to IPv4 (0.0.0.0; :: means both).
func everyInterface(port int, v4only bool, log logging.LeveledLogger) (*icePort, error) {
	nets := []ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}
	if v4only {
		nets = nets[:1]
	}
	for try := 0; ; try++ {
		p := port
		if p < 0 {
			p = freeUDPPort()
		}
		m, err := ice.NewMultiUDPMuxFromPort(p, ice.UDPMuxFromPortWithNetworks(nets...), ice.UDPMuxFromPortWithLogger(log),
			ice.UDPMuxFromPortWithIPFilter(func(ip net.IP) bool { return !ip.IsLinkLocalUnicast() }))
		if err == nil {
			return &icePort{mux: m, addrs: m.GetListenAddresses()}, nil
		}
		if port >= 0 || try == 20 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("whip: ICE port %d on every interface: %w", p, err)
		}
	}
}

// thisMachine binds the port on every address of this machine, loopback
// included, and takes packets only from this machine's own addresses. It is the
// default: a peer on the same machine may offer only its interface addresses
// (libnice never offers loopback and pins each socket to its interface, so it
// cannot reach 127.0.0.1), while nothing outside the machine is answered, as
// with a loopback bind.
func thisMachine(port int, log logging.LeveledLogger) (*icePort, error) {
	addrs, err := machineAddrs()
	if err != nil {
		return nil, fmt.Errorf("whip: ICE port: %w", err)
	}
	own := toSet(addrs)
	for try := 0; ; try++ {
		conns, err := bindAll(addrs, port)
		if err == nil {
			muxes := make([]ice.UDPMux, len(conns))
			bound := make([]net.Addr, len(conns))
			for i, c := range conns {
				muxes[i] = ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: log, UDPConn: &localOnlyConn{PacketConn: c, own: own}})
				bound[i] = c.LocalAddr()
			}
			return &icePort{mux: ice.NewMultiUDPMuxDefault(muxes...), addrs: bound, loopback: true}, nil
		}
		if port >= 0 || try == 20 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("whip: ICE port: %w", err)
		}
	}
}

// machineAddrs lists this machine's unicast addresses, loopback first. IPv6
// link-local addresses are left out: they need a zone, and pion does not offer
// them as candidates (RFC 8445 §5.1.1.1).
func machineAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("interface addresses: %w", err)
	}
	var loop, other []netip.Addr
	for _, a := range ifAddrs {
		pfx, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pfx.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.IsLinkLocalUnicast(), ip.IsMulticast(), ip.IsUnspecified():
		case ip.IsLoopback():
			loop = append(loop, ip)
		default:
			other = append(other, ip)
		}
	}
	if len(loop) == 0 {
		loop = append(loop, netip.MustParseAddr("127.0.0.1"))
	}
	return append(loop, other...), nil
}

// bindAll binds port on every address; port < 0 takes the first socket's free
// port for all of them. An address that cannot be bound yet (an IPv6 address
// still in duplicate address detection) is left out; loopback, first, cannot.
func bindAll(addrs []netip.Addr, port int) ([]net.PacketConn, error) {
	conns := make([]net.PacketConn, 0, len(addrs))
	for i, a := range addrs {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(max(port, 0)))))
		if err != nil && i > 0 && errors.Is(err, syscall.EADDRNOTAVAIL) {
			continue
		}
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("bind %s: %w", a, err)
		}
		if port <= 0 {
			port = c.LocalAddr().(*net.UDPAddr).Port
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func toSet(addrs []netip.Addr) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		m[a] = true
	}
	return m
}

func freeUDPPort() int {
	c, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return 0
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// localOnlyConn drops packets from addresses that are not this machine's.
// It wraps only the net.PacketConn methods, so the mux reads through ReadFrom.
type localOnlyConn struct {
	net.PacketConn
	own map[netip.Addr]bool
}

func (c *localOnlyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if ua, ok := addr.(*net.UDPAddr); ok {
			if ip, ok := netip.AddrFromSlice(ua.IP); ok && (ip.Unmap().IsLoopback() || c.own[ip.Unmap()]) {
				return n, addr, nil
			}
		}
	}
}

// ICEAddr is the first bound ICE address: loopback when the gateway binds it.
func (p *icePort) ICEAddr() net.Addr {
	if len(p.addrs) == 0 {
		return &net.UDPAddr{}
	}
	return p.addrs[0]
}

func (p *icePort) Close() error { return p.mux.Close() }
