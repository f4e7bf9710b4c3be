// Package gateway is sluice's edge: it terminates WHIP and WHEP (WebRTC with pion)
// and Media over QUIC (package internal/moq: raw QUIC and WebTransport),
// authenticates requests once auth is configured (auth.go: bearer JWTs and the
// auth policy), admits them through the throttle policy, places streams on agents through the
// route policy, carries media to and from node processes over the internal QUIC
// media link, and serves the HTTP API, metrics and the dashboard.
//
// Its core is protocol-neutral (session.go): a stream has one Source and any
// number of Sinks, and admission (admission.go), placement (placement.go) and the
// link to the node (nodelink.go) serve every protocol alike. WHIP is a Source
// (whip.go), WHEP a Sink (whep.go); http.go only routes.
//
// A gateway keeps no state another gateway needs: a stream's placement lives with
// the agent that carries it, and membership comes from serf.
package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/moq"
	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/gateway/internal/whip"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/streamid"
)

// Config configures a gateway. The zero value of each field means its default.
type Config struct {
	// ID names the gateway in the cluster and in logs. Default: the cluster member name.
	ID string
	// ICEUDPPort is the one UDP port every WebRTC session uses. Default 8189; a
	// negative value picks a free port (tests).
	ICEUDPPort int
	// ICEBind is the address the ICE port binds to. Default "127.0.0.1"; use
	// "0.0.0.0" (with ICEHosts) to accept browsers from other machines.
	ICEBind string
	// ICEHosts are the IP addresses advertised as ICE host candidates instead of the
	// bound interface addresses — the public address behind a NAT or in a container.
	ICEHosts []string
	// StreamHeader carries the stream id on API calls. Default "X-Stream-Id".
	StreamHeader string
	// CORSOrigins may call the HTTP API from a browser. Default ["*"].
	CORSOrigins []string
	// MaxOfferBytes bounds an SDP offer or PATCH body. Default 64 KiB.
	MaxOfferBytes int64
	// TrackWait is how long a WHEP request waits for a just-started stream to
	// announce all of its tracks. Default 3s.
	TrackWait time.Duration
	// APIToken, when set, is the bearer token every /v1/ request must carry.
	// Required when the gateway listens beyond loopback. Default: none (dev).
	APIToken string
	// RouteHeaders are the request headers passed to the route policy (RouteInput
	// Headers). Default ["X-Region"].
	RouteHeaders []string
	// Purpose is the node purpose that carries WebRTC streams. Default "relay".
	Purpose string
	// MoQ is the Media over QUIC endpoint. Default: off.
	MoQ MoQConfig
}

// MoQConfig configures the MoQ endpoint: MoQT over raw QUIC and WebTransport
// on one UDP port.
type MoQConfig struct {
	// Listen is the UDP address (and, with a self-signed certificate, the TCP
	// address of /certificate.sha256). Empty turns the endpoint off.
	Listen string
	// TLS is the endpoint's certificate. Nil means a rotating self-signed
	// ECDSA certificate, allowed only on a loopback Listen address.
	TLS *tls.Config
}

func (c Config) withDefaults() Config {
	if c.ICEUDPPort == 0 {
		c.ICEUDPPort = 8189
	}
	if c.ICEBind == "" {
		c.ICEBind = "127.0.0.1"
	}
	if c.StreamHeader == "" {
		c.StreamHeader = streamid.HeaderDefault
	}
	if len(c.CORSOrigins) == 0 {
		c.CORSOrigins = []string{"*"}
	}
	if c.MaxOfferBytes == 0 {
		c.MaxOfferBytes = 64 << 10
	}
	if c.TrackWait == 0 {
		c.TrackWait = 3 * time.Second
	}
	if c.Purpose == "" {
		c.Purpose = "relay"
	}
	if c.RouteHeaders == nil {
		c.RouteHeaders = []string{"X-Region"}
	}
	return c
}

// Gateway is one edge process's WHIP/WHEP and API surface.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	cluster *cluster.Cluster
	policy  Policy
	core    *session.Core
	webrtc  *whip.Server
	moq     *moq.Server // nil when off
	moqDone chan struct{}
	mux     http.Handler
	extras  []route
	auth    *authorizer   // nil: auth off
	stop    chan struct{} // closed by Close: ends the limits enforcer
	loops   sync.WaitGroup
	closed  sync.Once
}

// route is an extra HTTP handler mounted by the caller (plugins, nodes API).
type route struct {
	pattern string
	h       http.Handler
}

// Option adds to a gateway at construction.
type Option func(*Gateway)

// WithPolicy sets the route and throttle policy. Without it the gateway admits
// everything and offers the eligible agents in membership order.
func WithPolicy(p Policy) Option { return func(g *Gateway) { g.policy = p } }

// WithHandler mounts h at pattern (net/http ServeMux syntax) on the gateway's mux.
func WithHandler(pattern string, h http.Handler) Option {
	return func(g *Gateway) { g.extras = append(g.extras, route{pattern, h}) }
}

// New makes a gateway and binds its ICE port. It needs the cluster membership (to
// find agents), and the member identity for mutual TLS on internal links.
func New(cfg Config, c *cluster.Cluster, id *pki.Identity, log *slog.Logger, set *metrics.Set, opts ...Option) (*Gateway, error) {
	cfg = cfg.withDefaults()
	if cfg.ID == "" {
		cfg.ID = c.Name()
	}
	if set == nil {
		set = metrics.NewSet()
	}
	g := &Gateway{cfg: cfg, log: log, cluster: c, stop: make(chan struct{})}
	for _, o := range opts {
		o(g)
	}
	core, err := session.New(session.Config{ID: cfg.ID, Purpose: cfg.Purpose, TrackWait: cfg.TrackWait}, c, id, g.policy, log, set)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.core = core
	wc := cfg.webrtcConfig()
	if g.auth != nil {
		wc.Authorize = g.authorizeHTTP
	}
	g.webrtc, err = whip.New(wc, core, log)
	if err != nil {
		core.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if cfg.MoQ.Listen != "" {
		mc := moq.Config{Listen: cfg.MoQ.Listen, TLS: cfg.MoQ.TLS, Metrics: set}
		if g.auth != nil {
			mc.Authorize = g.authorizeMoQ
		}
		g.moq, err = moq.New(mc, core, log.With("component", "moq"))
		if err != nil {
			g.webrtc.Close()
			core.Close()
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.moqDone = make(chan struct{})
		go func() {
			defer close(g.moqDone)
			_ = g.moq.Serve(context.Background()) // until Close
		}()
	}
	g.mux = g.routes(set)
	if g.auth != nil {
		g.loops.Add(1)
		go func() { defer g.loops.Done(); g.enforceLimits(g.stop) }()
	}
	return g, nil
}

// MoQAddr is the bound MoQ UDP address, or nil when the endpoint is off.
func (g *Gateway) MoQAddr() net.Addr {
	if g.moq == nil {
		return nil
	}
	return g.moq.Addr()
}

// MoQCertificateHash is the hex SHA-256 of the MoQ endpoint's self-signed
// certificate (what /certificate.sha256 serves), or "" when it has a
// configured certificate or is off.
func (g *Gateway) MoQCertificateHash() string {
	if g.moq == nil {
		return ""
	}
	return g.moq.CertificateHash()
}

func (c Config) webrtcConfig() whip.Config {
	return whip.Config{ICEUDPPort: c.ICEUDPPort, ICEBind: c.ICEBind, ICEHosts: c.ICEHosts, StreamHeader: c.StreamHeader,
		MaxOfferBytes: c.MaxOfferBytes, RouteHeaders: c.RouteHeaders}
}

// NewWebRTCAPI builds the pion API every WebRTC session of a gateway with cfg
// shares, on the ICE socket udp. It is exported so that a benchmark's baseline
// relay runs with exactly the gateway's pion settings.
func NewWebRTCAPI(cfg Config, udp net.PacketConn) (*webrtc.API, error) {
	return whip.NewAPI(cfg.withDefaults().webrtcConfig(), udp)
}

// Handler is the gateway's whole HTTP surface.
func (g *Gateway) Handler() http.Handler { return g.mux }

// ICEAddr is the bound ICE UDP address.
func (g *Gateway) ICEAddr() net.Addr { return g.webrtc.ICEAddr() }

// ServingAgents is the number of agents the gateway could place a stream on now.
func (g *Gateway) ServingAgents() int { return g.core.ServingAgents() }

// Close ends every session and releases the gateway's ports. It is safe to call
// twice.
func (g *Gateway) Close() error {
	g.closed.Do(func() {
		close(g.stop)
		g.loops.Wait()
		if g.moq != nil {
			_ = g.moq.Close()
			<-g.moqDone
		}
		g.webrtc.Close()
		g.core.Close()
	})
	return nil
}

// Policy makes the gateway's routing and admission decisions (see session.Policy).
type Policy = session.Policy
