package whip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"

	"github.com/sluicegw/sluice/gateway/internal/fanout"
	"github.com/sluicegw/sluice/internal/rawudp"
)

// icePort is the gateway's one ICE UDP port: the sockets bound on it, as
// Config.ICEBind says, and the mux that hands their packets to sessions by ICE
// username. Every listen address of the mux is offered as a host candidate
// (RATIONALE.md says which and why).
type icePort struct {
	mux      ice.UDPMux
	addrs    []net.Addr       // the bound addresses, loopback first when bound
	loopback bool             // loopback addresses are among the candidates
	socks    []*fanout.Socket // the bound sockets, for the WHEP fan-out's sends
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
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: max(cfg.ICEUDPPort, 0)})
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
	conn, socks := udp, []*fanout.Socket(nil)
	if c, ok := udp.(*net.UDPConn); ok {
		if r, err := rawudp.New(c); err == nil {
			conn, socks = r.AsPacketConn(), []*fanout.Socket{fanout.NewSocket(r)}
		}
	}
	return &icePort{mux: ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: log, UDPConn: conn}),
		addrs: []net.Addr{udp.LocalAddr()}, loopback: a != nil && a.IP.IsLoopback(), socks: socks}
}

// everyInterface binds the port on every interface address, one socket each
// (a socket bound to the unspecified address would answer from whichever
// address the kernel picks, not the candidate's), as pion's
// NewMultiUDPMuxFromPort does — by hand, so that the WHEP fan-out can send on
// the sockets. Loopback is left out, as pion leaves it out: a remote peer
// would only try its own loopback. v4only keeps it to IPv4 (0.0.0.0; :: means
// both).
func everyInterface(port int, v4only bool, log logging.LeveledLogger) (*icePort, error) {
	all, err := machineAddrs()
	if err != nil {
		return nil, fmt.Errorf("whip: ICE port: %w", err)
	}
	var addrs []netip.Addr
	for _, a := range all {
		if !a.IsLoopback() && (a.Is4() || !v4only) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("whip: ICE port: no interface address to bind")
	}
	return bindPort(addrs, port, log, func(c rawudp.PacketConn) net.PacketConn { return c }, false)
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
	return bindPort(addrs, port, log, func(c rawudp.PacketConn) net.PacketConn { return &localOnlyConn{PacketConn: c, own: own} }, true)
}

// bindPort binds port on every address (a negative port: one free port for
// all of them) and muxes the sockets, each read through wrap. The mux reads
// and writes them with raw system calls (package rawudp): pion's mux reads
// every packet of every session, and net.UDPConn's reads would wake the
// runtime's sysmon thread once per packet of an otherwise idle gateway.
func bindPort(addrs []netip.Addr, port int, log logging.LeveledLogger, wrap func(rawudp.PacketConn) net.PacketConn, loopback bool) (*icePort, error) {
	for try := 0; ; try++ {
		conns, err := bindAll(addrs, port)
		if err == nil {
			p := &icePort{loopback: loopback}
			muxes := make([]ice.UDPMux, len(conns))
			for i, c := range conns {
				r, err := rawudp.New(c)
				if err != nil {
					for _, c := range conns {
						_ = c.Close()
					}
					return nil, fmt.Errorf("whip: ICE port: %w", err)
				}
				muxes[i] = ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: log, UDPConn: wrap(r.AsPacketConn())})
				p.addrs = append(p.addrs, c.LocalAddr())
				p.socks = append(p.socks, fanout.NewSocket(r))
			}
			p.mux = ice.NewMultiUDPMuxDefault(muxes...)
			return p, nil
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
func bindAll(addrs []netip.Addr, port int) ([]*net.UDPConn, error) {
	conns := make([]*net.UDPConn, 0, len(addrs))
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

// localOnlyConn drops packets from addresses that are not this machine's.
// pion's mux reads through ReadFromAddrPort (ReadFrom only when a conn lacks
// it); both filter.
type localOnlyConn struct {
	rawudp.PacketConn
	own map[netip.Addr]bool
}

func (c *localOnlyConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, ap, err := c.PacketConn.ReadFromAddrPort(b)
		if err != nil {
			return n, ap, err
		}
		if ip := ap.Addr().Unmap(); ip.IsLoopback() || c.own[ip] {
			return n, ap, nil
		}
	}
}

func (c *localOnlyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// ICEAddr is the first bound ICE address: loopback when the gateway binds it.
func (p *icePort) ICEAddr() net.Addr {
	if len(p.addrs) == 0 {
		return &net.UDPAddr{}
	}
	return p.addrs[0]
}

func (p *icePort) Close() error { return p.mux.Close() }
