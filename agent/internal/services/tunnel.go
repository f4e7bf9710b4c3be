package services

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/copybuf"
	"github.com/sluicegw/sluice/internal/wire"
)

// tunnelOpenTimeout bounds reading a tunnel's open line, writing its answer
// and dialing its service: a gateway sends the line at once, and a service
// that does not take a connection within it is down.
const tunnelOpenTimeout = 5 * time.Second

// tunnel is one open tunnel: a gateway's connection spliced to a service's.
// Its raw connections are closed to end it — that never blocks, so a stream
// leaving the agent can end its tunnels under the lock that says so.
type tunnel struct {
	stream string
	gw     net.Conn // the gateway's, under its TLS
	svc    net.Conn // the service's, once dialed; set before the copies start
	closed bool     // under Proxy.mu
	// active says bytes went through since the idle sweep last looked: the
	// copies set it (a load, and a store only when it was false), and the
	// sweep, once a second, turns it into a touch of the stream's idle timer.
	active atomic.Bool
}

// closeLocked ends the tunnel (under Proxy.mu).
func (t *tunnel) closeLocked() {
	if t.closed {
		return
	}
	t.closed = true
	t.gw.Close()
	if t.svc != nil {
		t.svc.Close()
	}
}

// ServeTunnel serves one tunnel: the agent API's server hands it a connection
// that negotiated wire.ALPNTunnel (http.Server.TLSNextProto) and closes the
// connection when ServeTunnel returns. It reads the open line, checks the
// stream is here as a call is checked (its media is live here, or it is held
// for calls), dials the service and answers; then it only copies bytes both
// ways until either side ends, or the stream leaves the agent. HTTP is spoken
// by the gateway and the service alone.
func (s *Proxy) ServeTunnel(_ *http.Server, conn *tls.Conn, _ http.Handler) {
	t, ans := s.openTunnel(conn)
	if t != nil {
		defer s.untrack(t)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(tunnelOpenTimeout))
	_, err := conn.Write(ans.Line())
	_ = conn.SetWriteDeadline(time.Time{})
	if err != nil || ans.Status != http.StatusOK {
		return
	}
	t.splice(conn)
}

// openTunnel reads the open line and makes the tunnel it asks for, or says
// why not. A tunnel it returns is tracked, whatever the answer.
func (s *Proxy) openTunnel(conn *tls.Conn) (*tunnel, wire.TunnelAnswer) {
	_ = conn.SetReadDeadline(time.Now().Add(tunnelOpenTimeout))
	line, err := wire.ReadTunnelLine(conn)
	var o wire.TunnelOpen
	if err == nil {
		o, err = wire.ParseTunnelOpen(line)
	}
	if err != nil {
		s.log.Debug("agent: a tunnel did not open", "from", conn.RemoteAddr(), "err", err)
		return nil, wire.TunnelAnswer{Status: http.StatusBadRequest, Word: "bad-open"}
	}
	_ = conn.SetReadDeadline(time.Time{})
	u := s.up[o.Service]
	switch {
	case u == nil:
		return nil, wire.TunnelAnswer{Status: http.StatusNotFound, Word: "no-service"}
	case !u.speaks(o.Proto):
		return nil, wire.TunnelAnswer{Status: http.StatusHTTPVersionNotSupported, Word: u.only()}
	}
	// Tracked before the stream is checked, so that the stream leaving
	// between the check and the copies still ends the tunnel.
	t := &tunnel{stream: o.Stream, gw: conn.NetConn()}
	if !s.track(t) {
		return nil, wire.TunnelAnswer{Status: http.StatusServiceUnavailable, Word: "shutting-down"}
	}
	if _, ok := s.here(o.Stream, true); !ok {
		return t, wire.TunnelAnswer{Status: http.StatusMisdirectedRequest, Word: "stream-not-here"}
	}
	svc, err := net.DialTimeout("tcp", u.hostport, tunnelOpenTimeout)
	if err != nil {
		s.log.Info("agent: service unreachable", "service", u.name, "addr", u.hostport, "err", err)
		return t, wire.TunnelAnswer{Status: http.StatusBadGateway, Word: "service-down"}
	}
	if !s.attach(t, svc) {
		svc.Close()
		return t, wire.TunnelAnswer{Status: http.StatusMisdirectedRequest, Word: "stream-not-here"}
	}
	return t, wire.TunnelAnswer{Status: http.StatusOK, Word: "ok"}
}

// splice copies the gateway's bytes to the service and the service's to the
// gateway until either direction ends, then ends both.
func (t *tunnel) splice(gw *tls.Conn) {
	done := make(chan struct{})
	go func() { // the service's bytes; ends with the tunnel
		defer close(done)
		if t.pump(gw, t.svc) == nil {
			_ = gw.CloseWrite() // the service closed: tell the gateway cleanly
		}
		t.gw.Close()
		t.svc.Close()
	}()
	_ = t.pump(t.svc, gw)
	t.gw.Close()
	t.svc.Close()
	<-done
}

// pump copies src to dst until src ends (nil) or either fails.
func (t *tunnel) pump(dst io.Writer, src io.Reader) error {
	buf := copyBufs.Get()
	defer copyBufs.Put(buf)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !t.active.Load() {
				t.active.Store(true)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyBufs are the tunnels' copy buffers: a tunnel holds two while it is open.
var copyBufs copybuf.Pool

// track records an open tunnel, unless Run has ended.
func (s *Proxy) track(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	m := s.tunnels[t.stream]
	if m == nil {
		m = map[*tunnel]struct{}{}
		s.tunnels[t.stream] = m
	}
	m[t] = struct{}{}
	return true
}

// attach gives t its service connection, unless t was ended meanwhile.
func (s *Proxy) attach(t *tunnel, svc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.closed {
		return false
	}
	t.svc = svc
	return true
}

// untrack ends t and forgets it.
func (s *Proxy) untrack(t *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.closeLocked()
	if m := s.tunnels[t.stream]; m != nil {
		delete(m, t)
		if len(m) == 0 {
			delete(s.tunnels, t.stream)
		}
	}
}

// closeTunnelsLocked ends the tunnels of a stream that left the agent: a
// gateway's next call for it opens a new one, which is refused (421), and
// the gateway looks for the stream again.
func (s *Proxy) closeTunnelsLocked(stream string) {
	for t := range s.tunnels[stream] {
		t.closeLocked()
	}
}

// touchActiveLocked counts the traffic of open tunnels as calls: a held
// stream whose tunnels carried bytes since the last sweep is not idle.
func (s *Proxy) touchActiveLocked() {
	now := time.Now()
	for stream, ts := range s.tunnels {
		if _, held := s.held[stream]; !held {
			continue
		}
		for t := range ts {
			if t.active.Swap(false) {
				s.held[stream] = now
			}
		}
	}
}
