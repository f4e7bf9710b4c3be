// Package gateway is sluice's edge: it terminates WHIP and WHEP (WebRTC with pion),
// admits requests through the throttle policy, places streams on agents through the
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
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/medialink"
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
	id      *pki.Identity
	agents  *agentClient
	policy  Policy
	m       *gwMetrics

	api    *webrtc.API
	udp    net.PacketConn
	media  *medialink.Endpoint // the one socket of every media link to nodes
	mux    http.Handler
	extras []route

	mu        sync.Mutex
	pubs      map[string]*publication  // stream id → publication through this gateway
	subs      map[string]*subscription // stream id → shared subscription on this gateway
	resources map[string]resource      // resource id → WHIP or WHEP session
	watching  map[string]bool          // agent API addresses whose events are followed
	links     linkSet                  // every node link, for the agents' events

	viewMu sync.Mutex
	view   *agentList // built at the cluster change count view.at

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
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
	g := &Gateway{
		cfg:      cfg,
		log:      log,
		cluster:  c,
		id:       id,
		agents:   newAgentClient(id),
		pubs:      map[string]*publication{},
		subs:      map[string]*subscription{},
		resources: map[string]resource{},
		watching:  map[string]bool{},
	}
	for _, o := range opts {
		o(g)
	}
	if g.policy == nil {
		g.policy = eligiblePolicy{}
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.m = newGWMetrics(set, g)
	udp, err := net.ListenPacket("udp", net.JoinHostPort(cfg.ICEBind, strconv.Itoa(max(cfg.ICEUDPPort, 0))))
	if err != nil {
		return nil, fmt.Errorf("gateway: ICE port: %w", err)
	}
	g.udp = udp
	api, err := NewWebRTCAPI(cfg, udp)
	if err != nil {
		udp.Close()
		return nil, err
	}
	g.api = api
	// Media links leave from one socket of every interface, as quic-go's own
	// dialling would; their media paths come back to it.
	media, err := medialink.NewEndpoint(":0")
	if err != nil {
		udp.Close()
		return nil, err
	}
	g.media = media
	g.goOwned(func() { _ = media.Serve(g.ctx) })
	g.mux = g.routes(set)
	return g, nil
}

// Handler is the gateway's whole HTTP surface.
func (g *Gateway) Handler() http.Handler { return g.mux }

// ICEAddr is the bound ICE UDP address.
func (g *Gateway) ICEAddr() net.Addr { return g.udp.LocalAddr() }

// Close ends every session and releases the ICE port. It is safe to call twice.
func (g *Gateway) Close() error {
	g.closed.Do(func() {
		g.cancel()
		g.mu.Lock()
		ss := make([]resource, 0, len(g.resources))
		for _, s := range g.resources {
			ss = append(ss, s)
		}
		g.mu.Unlock()
		for _, s := range ss {
			s.close("gateway shutting down")
		}
		g.wg.Wait()
		_ = g.media.Close()
		_ = g.udp.Close()
		g.agents.close()
	})
	return nil
}

// go runs f on a goroutine owned by the gateway; Close waits for it.
func (g *Gateway) goOwned(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}
