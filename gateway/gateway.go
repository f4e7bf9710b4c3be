// Package gateway is sluice's edge: it terminates WHIP and WHEP (WebRTC with pion)
// and Media over QUIC (package internal/moq: raw QUIC and WebTransport),
// authenticates requests once auth is configured (auth.go: bearer JWTs and the
// auth policy), admits them through the throttle policy, places streams on agents through the
// route policy, carries media to and from node processes over the internal QUIC
// media link, and serves the HTTP API, metrics and the dashboard. It keeps its
// preloaded streams placed (Config.Streams), tells webhooks of its streams'
// events (package internal/webhook), and changes those, its token keys and
// policies on a config reload (reload.go).
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/moq"
	"github.com/sluicegw/sluice/gateway/internal/proxy"
	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/gateway/internal/whip"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// Config configures a gateway. The zero value of each field means its default.
type Config struct {
	// ID names the gateway in the cluster and in logs. Default: the cluster member name.
	ID string
	// ICEUDPPort is the one UDP port every WebRTC session uses. Default 8189; a
	// negative value picks a free port (tests).
	ICEUDPPort int
	// ICEBind is where the ICE port is bound. Default "": every address of this
	// machine, answering peers on this machine only; one IP address binds that
	// address; "0.0.0.0" or "::" binds every interface, to accept browsers and
	// encoders from other machines (with ICEHosts behind a NAT).
	ICEBind string
	// ICEHosts are the IP addresses advertised as ICE host candidates instead of the
	// bound interface addresses — the public address behind a NAT or in a container.
	ICEHosts []string
	// ICEServers are STUN/TURN servers told to WebRTC clients in Link headers
	// (RFC 9725 §4.6) and used by the page at /. Default none.
	ICEServers []ICEServer
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
	// RetryAfter is the Retry-After of every 503 the gateway answers (a full
	// queue, a queue timeout, no agent, draining). Default 2s.
	RetryAfter time.Duration
	// ProxyRoutes are the HTTP and gRPC calls the gateway proxies, by the
	// stream they name (StreamHeader, or a path segment or query parameter),
	// to the service on the agent that carries that stream. Default: none.
	ProxyRoutes []ProxyRoute
	// Scale is the scale signal (GET /v1/scale, sluice_cluster_desired_agents).
	// Default: off.
	Scale Scale
	// Webhooks are the endpoints told of the gateway's stream events
	// (package webhook documents the body and signature). Default: none.
	Webhooks []Webhook
	// Streams are the stream rules (the config's streams): an exact id is
	// placed at start and kept placed; every rule sets the purpose, agent
	// tags and limits of the ids it matches. Default: none.
	Streams []StreamRule
}

// StreamRule is one entry of Config.Streams (see session.StreamRule).
type StreamRule = session.StreamRule

// Webhook is an endpoint of the gateway's stream events: its URL, the event
// types it gets (empty: all) and the secret the Sluice-Signature header is
// made with ("": unsigned).
type Webhook = webhook.Target

// ProxyRoute is one proxied path prefix (gateway.proxy.routes); see the
// README's "Edge proxy".
type ProxyRoute struct {
	Prefix  string        // "/api/", or a gRPC package path such as "/perception.v1."
	Rewrite string        // replaces Prefix before the call goes on; "" keeps the path
	Service string        // the agent's service (agent.services); default "default"
	Stream  string        // "header" (default), "path:N" or "query:NAME"
	Timeout time.Duration // the whole call; 0: unbounded
	MaxBody int64         // request body bytes; default 10 MiB
	Origin  string        // where the throttle's "origin" sends a call instead (http(s) URL); "" the service
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
	if c.RetryAfter <= 0 {
		c.RetryAfter = 2 * time.Second
	}
	return c
}

// Gateway is one edge process's WHIP/WHEP and API surface.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	cluster  *cluster.Cluster
	policy   Policy
	core     *session.Core
	webrtc   *whip.Server
	moq      *moq.Server  // nil when off
	proxy    *proxy.Proxy // nil without routes
	moqDone  chan struct{}
	mux      http.Handler
	extras   []route
	auth     *authorizer               // nil: auth off
	api      atomic.Pointer[apiAccess] // the API token and CORS origins, replaced on a reload
	hooks    *webhook.Dispatcher
	reloader Reloader      // nil: no file to reload
	stop     chan struct{} // closed by Close: ends the limits enforcer
	loops    sync.WaitGroup
	closed   sync.Once
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
	for i, h := range cfg.Webhooks {
		if err := h.Check(); err != nil {
			return nil, fmt.Errorf("gateway: webhooks[%d].%w", i, err)
		}
	}
	g.hooks = webhook.New(webhook.Config{Gateway: cfg.ID}, cfg.Webhooks, log.With("component", "webhook"), set)
	core, err := session.New(session.Config{ID: cfg.ID, Purpose: cfg.Purpose, TrackWait: cfg.TrackWait, Events: g.hooks.Send}, c, id, g.policy, log, set)
	if err != nil {
		g.hooks.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.core = core
	if len(cfg.Streams) > 0 {
		core.SetStreams(cfg.Streams)
	}
	wc := cfg.webrtcConfig()
	if g.auth != nil {
		wc.Authorize = g.authorizeHTTP
	}
	g.webrtc, err = whip.New(wc, core, log)
	if err != nil {
		core.Close()
		g.hooks.Close()
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
			g.hooks.Close()
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.moqDone = make(chan struct{})
		go func() {
			defer close(g.moqDone)
			_ = g.moq.Serve(context.Background()) // until Close
		}()
	}
	if len(cfg.ProxyRoutes) > 0 {
		routes := make([]proxy.Route, len(cfg.ProxyRoutes))
		for i, r := range cfg.ProxyRoutes {
			routes[i] = proxy.Route{Prefix: r.Prefix, Rewrite: r.Rewrite, Service: r.Service, Stream: r.Stream, Timeout: r.Timeout,
				MaxBody: r.MaxBody, Origin: r.Origin}
		}
		pcfg := proxy.Config{Routes: routes, StreamHeader: cfg.StreamHeader, AgentTLS: id.ClientTLS()}
		if g.auth != nil {
			pcfg.Authorize = g.authorizeHTTP
		}
		g.proxy, err = proxy.New(pcfg, core, log.With("component", "proxy"), proxy.NewMetrics(set))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	set.RegisterMetricsWriter(g.writeScaleMetrics)
	g.api.Store(&apiAccess{token: cfg.APIToken, origins: cfg.CORSOrigins})
	g.mux = g.guard(g.routes(set))
	g.loops.Add(1)
	go func() { defer g.loops.Done(); g.enforceLimits(g.stop) }()
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
		MaxOfferBytes: c.MaxOfferBytes, RouteHeaders: c.RouteHeaders, ICEServers: c.ICEServers}
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

// Drain is the gateway's half of a graceful stop: new sessions (WHIP, WHEP and
// MoQ) and /readyz are refused with 503 and Retry-After, so that load balancers
// send nothing more; the member is tagged draining, so that nothing is routed
// to it; live sessions run on until none is left or timeout has passed; then
// they are closed (Close). The caller then stops its HTTP server and leaves
// the cluster.
func (g *Gateway) Drain(timeout time.Duration) {
	g.core.Drain()
	_ = g.cluster.SetTags(map[string]string{wire.TagState: wire.StateDraining})
	deadline := time.Now().Add(timeout)
	for g.LiveSessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	g.log.Info("gateway: drained; closing the sessions left", "sessions", g.LiveSessions())
	_ = g.Close()
}

// LiveSessions is the publications and viewers the gateway carries now.
func (g *Gateway) LiveSessions() int { return g.core.LiveSessions() }

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
		if g.proxy != nil {
			g.proxy.Close()
		}
		g.core.Close()
		g.hooks.Close()
	})
	return nil
}

// ICEServer is a STUN or TURN server told to clients (see whip.ICEServer).
type ICEServer = whip.ICEServer

// Policy makes the gateway's routing and admission decisions (see session.Policy).
type Policy = session.Policy

// guard wraps the gateway's routes: every 503 carries Retry-After (RFC 9110
// §15.6.4: the refusal is temporary — a queue that stayed full, no agent, a
// gateway draining — and a client should come back, not give up), and while the
// gateway drains, a new WHIP or WHEP session and /readyz are refused before any
// SDP work, so a load balancer takes the gateway out and clients retry
// elsewhere. Live sessions' PATCH and DELETE go on.
func (g *Gateway) guard(next http.Handler) http.Handler {
	after := strconv.Itoa(int((g.cfg.RetryAfter + 999_999_999) / 1_000_000_000)) // whole seconds, rounded up
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w = &retryAfterWriter{ResponseWriter: w, after: after}
		if g.core.Draining() && (r.Method == http.MethodPost && (strings.HasPrefix(r.URL.Path, "/whip/") || strings.HasPrefix(r.URL.Path, "/whep/")) ||
			r.URL.Path == "/readyz") {
			problem.Write(w, http.StatusServiceUnavailable, "draining", "The gateway is draining",
				"it is shutting down and takes no new session; retry, and another gateway will take it")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// retryAfterWriter adds Retry-After to a 503 that does not say it.
type retryAfterWriter struct {
	http.ResponseWriter
	after string
}

func (w *retryAfterWriter) WriteHeader(status int) {
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", w.after)
	}
	w.ResponseWriter.WriteHeader(status)
}

// Flush passes through, for the streamed answers (followed node logs).
func (w *retryAfterWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the connection's own writer.
func (w *retryAfterWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var _ http.Flusher = (*retryAfterWriter)(nil)
