// Package whip is the gateway's WebRTC edge: WHIP publishers (RFC 9725) as the
// session core's Sources and WHEP viewers as one of its Sinks, with pion for
// SDP, ICE on one UDP port, DTLS and SRTP. It serves POST /whip/{stream} and
// /whep/{stream} and the resources their Location headers name (PATCH for
// trickle ICE and ICE restarts, DELETE).
package whip

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// Config configures the WebRTC edge. Zero values mean the defaults given.
type Config struct {
	// ICEUDPPort is the one UDP port every WebRTC session uses. Default 8189; a
	// negative value picks a free port (tests).
	ICEUDPPort int
	// ICEBind is where the ICE port is bound. Default "": every address of
	// this machine, loopback included, answering peers on this machine only;
	// one IP address binds that address alone; "0.0.0.0" (IPv4) or "::" (IPv4
	// and IPv6) binds every interface address, loopback left out.
	ICEBind string
	// ICEHosts are the IP addresses advertised as ICE host candidates instead of
	// the bound interface addresses.
	ICEHosts []string
	// StreamHeader is allowed in CORS preflights. Default "X-Stream-Id".
	StreamHeader string
	// MaxOfferBytes bounds an SDP offer or PATCH body. Default 64 KiB.
	MaxOfferBytes int64
	// RouteHeaders are the request headers passed to the route policy.
	RouteHeaders []string
	// ICEServers are named to clients in Link headers on OPTIONS and on the
	// 201 of an offer. Default none.
	ICEServers []ICEServer
	// Authorize, when set, runs first on every WHIP and WHEP request (POST,
	// PATCH, DELETE) whose stream id is valid, with the request's kind
	// (wire.KindPublish or wire.KindPlay). It answers a request it refuses
	// and returns false. Nil admits every request (auth off).
	Authorize func(w http.ResponseWriter, r *http.Request, kind, stream string) bool
}

func (c Config) withDefaults() Config {
	if c.ICEUDPPort == 0 {
		c.ICEUDPPort = 8189
	}
	if c.StreamHeader == "" {
		c.StreamHeader = "X-Stream-Id"
	}
	if c.MaxOfferBytes == 0 {
		c.MaxOfferBytes = 64 << 10
	}
	return c
}

// Server is the WHIP and WHEP surface of one gateway.
type Server struct {
	cfg  Config
	log  *slog.Logger
	core *session.Core
	api  *webrtc.API // WHIP publishers
	view *webrtc.API // WHEP viewers, whose RTP the fan-out sends
	port *icePort

	links []string // Link headers naming cfg.ICEServers

	mu        sync.Mutex
	resources map[string]resource // resource id → WHIP or WHEP session
}

// New binds the ICE port and makes the server.
func New(cfg Config, core *session.Core, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	lf := loggerFactory()
	port, err := listenICE(cfg, lf)
	if err != nil {
		return nil, err
	}
	api, err := newAPI(cfg, port, lf, true)
	if err == nil && len(port.socks) == 0 {
		err = errors.New("whip: the ICE port has no socket the WHEP fan-out can send on")
	}
	if err != nil {
		_ = port.Close()
		return nil, err
	}
	view, err := newAPI(cfg, port, lf, false)
	if err != nil {
		_ = port.Close()
		return nil, err
	}
	return &Server{cfg: cfg, log: log, core: core, api: api, view: view, port: port, links: linkHeaders(cfg.ICEServers),
		resources: map[string]resource{}}, nil
}

// Register mounts the WHIP and WHEP endpoints on mux.
func (srv *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /whip/{stream}", srv.authorized(wire.KindPublish, srv.handleWHIP))
	mux.HandleFunc("POST /whep/{stream}", srv.authorized(wire.KindPlay, srv.handleWHEP))
	for proto, kind := range map[string]string{"whip": wire.KindPublish, "whep": wire.KindPlay} {
		mux.HandleFunc("PATCH /"+proto+"/{stream}/{res}", srv.authorized(kind, srv.handlePatch))
		mux.HandleFunc("DELETE /"+proto+"/{stream}/{res}", srv.authorized(kind, srv.handleDelete))
		mux.HandleFunc("OPTIONS /"+proto+"/{stream}", srv.handleOptions)
		mux.HandleFunc("OPTIONS /"+proto+"/{stream}/{res}", srv.handleOptions)
	}
}

// authorized runs Config.Authorize before h. A request with an invalid
// stream id goes straight to h, which refuses it (400) before any work.
func (srv *Server) authorized(kind string, h http.HandlerFunc) http.HandlerFunc {
	if srv.cfg.Authorize == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		stream := r.PathValue("stream")
		if streamid.Validate(stream) == nil && !srv.cfg.Authorize(w, r, kind, stream) {
			return
		}
		h(w, r)
	}
}

// EndPublisher ends the WHIP sessions publishing stream (a publisher over its
// token's limits) and reports how many there were.
func (srv *Server) EndPublisher(stream, reason string) int {
	srv.mu.Lock()
	var ss []resource
	for _, s := range srv.resources {
		if s.kind() == wire.KindPublish && s.streamID() == stream {
			ss = append(ss, s)
		}
	}
	srv.mu.Unlock()
	for _, s := range ss {
		srv.endResource(s, reason)
	}
	return len(ss)
}

// ICEAddr is the bound ICE UDP address.
func (srv *Server) ICEAddr() net.Addr { return srv.port.ICEAddr() }

// Close ends every session and releases the ICE port. It is safe to call twice.
func (srv *Server) Close() {
	srv.mu.Lock()
	ss := make([]resource, 0, len(srv.resources))
	for _, s := range srv.resources {
		ss = append(ss, s)
	}
	srv.resources = map[string]resource{}
	srv.mu.Unlock()
	for _, s := range ss {
		s.close("gateway shutting down")
	}
	_ = srv.port.Close()
}
