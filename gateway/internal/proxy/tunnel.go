package proxy

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// Tunnel pool bounds. A tunnel is one TCP connection to an agent and one from
// the agent to its service, each holding two copy buffers there while open.
const (
	// tunnelIdle closes a tunnel no call used for this long.
	tunnelIdle = 90 * time.Second
	// tunnelIdlePerKey and tunnelIdleAll bound the idle HTTP/1.1 tunnels
	// kept per (agent, service, stream) and in all; an HTTP/2 tunnel carries
	// every call of its key at once.
	tunnelIdlePerKey = 32
	tunnelIdleAll    = 1024
	// tunnelOpenTimeout bounds dialing an agent, the TLS handshake and the
	// agent's answer to the open line.
	tunnelOpenTimeout = 10 * time.Second
	// modeTTL is how long a service's one protocol is remembered: an
	// operator may change agent.services to a service that speaks both, and
	// its gRPC calls then find HTTP/2 again within it.
	modeTTL = time.Minute
)

// tunnels are the gateway's end of the proxy's tunnels: HTTP/1.1 and HTTP/2
// (without TLS: h2c) transports that speak to an agent's service through
// tunnels the agent splices to it (wire.ALPNTunnel), pooled per (agent,
// service, stream) so that the agent's check of the stream when a tunnel
// opens holds for every call on it.
type tunnels struct {
	tls    *tls.Config
	h1, h2 *http.Transport
	// modes remembers the one protocol of an agent's service that speaks
	// only one ("api/service" → a mode), as its agent answered, for modeTTL;
	// a service not in it takes both.
	modes sync.Map
}

// mode is a service's one protocol (wire.TunnelH1 or wire.TunnelH2C), as its
// agent answered at a time.
type mode struct {
	proto string
	at    time.Time
}

func newTunnels(agentTLS *tls.Config) *tunnels {
	t := &tunnels{tls: agentTLS.Clone()}
	t.tls.NextProtos = []string{wire.ALPNTunnel}
	mk := func(proto string) *http.Transport {
		tr := &http.Transport{
			DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return t.dial(ctx, proto, addr) },
			MaxIdleConns:        tunnelIdleAll,
			MaxIdleConnsPerHost: tunnelIdlePerKey,
			IdleConnTimeout:     tunnelIdle,
			// A proxy passes bodies as they are: no gzip asked for and
			// undone on the service's behalf.
			DisableCompression: true,
		}
		if proto == wire.TunnelH2C {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		return tr
	}
	t.h1, t.h2 = mk(wire.TunnelH1), mk(wire.TunnelH2C)
	return t
}

// close closes the idle tunnels; calls still running keep theirs.
func (t *tunnels) close() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
}

// transport is the transport for a call to service on the agent at api: gRPC
// needs HTTP/2 end to end; everything else, WebSocket upgrades included, goes
// as HTTP/1.1 — unless the service speaks only one of the two.
func (t *tunnels) transport(api, service string, req *http.Request) *http.Transport {
	key := api + "/" + service
	if v, ok := t.modes.Load(key); ok {
		m := v.(mode)
		switch {
		case time.Since(m.at) > modeTTL:
			t.modes.CompareAndDelete(key, v)
		case m.proto == wire.TunnelH2C:
			return t.h2
		default:
			return t.h1
		}
	}
	if isGRPC(req) && req.Header.Get("Upgrade") == "" {
		return t.h2
	}
	return t.h1
}

// tunnelHost is the URL host a call's request carries to its transport: the
// transports pool connections by it, and dial reads the tunnel's key back
// from it. Hex keeps any agent address and name a plain host name.
func tunnelHost(api, service, stream string) string {
	return hex.EncodeToString([]byte(api)) + "." + hex.EncodeToString([]byte(service)) + "." +
		hex.EncodeToString([]byte(stream)) + ".tunnel"
}

// parseTunnelHost reads a tunnelHost back, from the "host:port" a transport
// dials.
func parseTunnelHost(addr string) (api, service, stream string, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", "", fmt.Errorf("proxy: tunnel address %q: %w", addr, err)
	}
	f := strings.Split(host, ".")
	if len(f) != 4 || f[3] != "tunnel" {
		return "", "", "", fmt.Errorf("proxy: %q is not a tunnel address", addr)
	}
	var out [3][]byte
	for i := range out {
		if out[i], err = hex.DecodeString(f[i]); err != nil {
			return "", "", "", fmt.Errorf("proxy: tunnel address %q: %w", addr, err)
		}
	}
	return string(out[0]), string(out[1]), string(out[2]), nil
}

// tunnelError is a tunnel that did not open: the call went nowhere, so the
// forwarder may send it elsewhere. Answer is the agent's refusal; without one
// the agent could not be reached.
type tunnelError struct {
	Agent  string
	Answer wire.TunnelAnswer
	Err    error
}

func (e *tunnelError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("tunnel to agent %s: %v", e.Agent, e.Err)
	}
	return fmt.Sprintf("tunnel to agent %s: refused %d %s", e.Agent, e.Answer.Status, e.Answer.Word)
}

func (e *tunnelError) Unwrap() error { return e.Err }

// dial opens a tunnel to the service and stream that addr names, on the
// agent it names, for proto.
func (t *tunnels) dial(ctx context.Context, proto, addr string) (net.Conn, error) {
	api, service, stream, err := parseTunnelHost(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, tunnelOpenTimeout)
	defer cancel()
	d := tls.Dialer{Config: t.tls}
	c, err := d.DialContext(ctx, "tcp", api)
	if err != nil {
		return nil, &tunnelError{Agent: api, Err: err}
	}
	conn := c.(*tls.Conn)
	if p := conn.ConnectionState().NegotiatedProtocol; p != wire.ALPNTunnel {
		conn.Close()
		return nil, &tunnelError{Agent: api, Err: fmt.Errorf("the agent does not take tunnels (ALPN %q)", p)}
	}
	ans, err := openTunnel(ctx, conn, wire.TunnelOpen{Service: service, Stream: stream, Proto: proto})
	if err != nil {
		conn.Close()
		return nil, &tunnelError{Agent: api, Err: err}
	}
	if ans.Status != http.StatusOK {
		conn.Close()
		if ans.Status == http.StatusHTTPVersionNotSupported && (ans.Word == wire.TunnelH1 || ans.Word == wire.TunnelH2C) {
			t.modes.Store(api+"/"+service, mode{ans.Word, time.Now()})
		}
		return nil, &tunnelError{Agent: api, Answer: ans}
	}
	return conn, nil
}

// openTunnel sends the open line and reads the agent's answer, within ctx.
func openTunnel(ctx context.Context, conn *tls.Conn, o wire.TunnelOpen) (wire.TunnelAnswer, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	if _, err := conn.Write(o.Line()); err != nil {
		return wire.TunnelAnswer{}, fmt.Errorf("sending the open line: %w", err)
	}
	line, err := wire.ReadTunnelLine(conn)
	if err != nil {
		return wire.TunnelAnswer{}, err
	}
	return wire.ParseTunnelAnswer(line)
}

// asTunnelError is the tunnelError in err, if the call failed opening a
// tunnel.
func asTunnelError(err error) (*tunnelError, bool) {
	var te *tunnelError
	return te, errors.As(err, &te)
}
