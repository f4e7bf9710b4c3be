// Package proxy is the gateway's edge proxy: HTTP and gRPC calls that name a
// stream go to the operator's service on the agent that carries that stream
// (SDR's workload routing agent), through a mutual-TLS tunnel that the agent
// splices to the service (RATIONALE.md). A route takes a path prefix, may
// rewrite it, and says where the stream id is; the session core says which
// agent has the stream, or places it.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/copybuf"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// Route is one proxied path prefix (gateway.proxy.routes).
type Route struct {
	// Prefix is the path prefix the route takes: "/api/", or a gRPC package
	// such as "/perception.v1.". Required.
	Prefix string
	// Rewrite replaces Prefix before the call goes on (SDR's prefix rewrite);
	// "" keeps the path as it came.
	Rewrite string
	// Service is the agent's service that answers (agent.services). Default
	// "default".
	Service string
	// Stream says where the call names its stream: "header" (Config's
	// StreamHeader; the default), "path:N" (the Nth path segment after
	// Prefix, from 1) or "query:NAME".
	Stream string
	// Timeout bounds the whole call; 0 leaves it unbounded (long streams).
	Timeout time.Duration
	// MaxBody bounds a request body in bytes. Default 10 MiB.
	MaxBody int64
	// Origin is where a call goes instead of the service when the throttle
	// policy answers "origin" (M2: the unprocessed original), an http(s) URL;
	// "" sends it on to the service.
	Origin string

	origin *httputil.ReverseProxy // for Origin

	streamSeg   int    // from Stream "path:N"
	streamQuery string // from Stream "query:NAME"
}

// Config configures the proxy.
type Config struct {
	Routes []Route
	// AgentTLS is the mutual-TLS client configuration for agents
	// (pki.Identity.ClientTLS); the proxy uses a copy whose ALPN asks for a
	// tunnel (wire.ALPNTunnel). Required.
	AgentTLS *tls.Config
	// StreamHeader names the header that carries the stream id (SDR's
	// convention). Default X-Stream-Id.
	StreamHeader string
	// Authorize, when set, decides every call (kind wire.KindProxy) once its
	// stream is known; it answers a call it refuses and returns false. Nil
	// admits every call (auth off).
	Authorize func(w http.ResponseWriter, r *http.Request, kind, stream string) bool
}

// reserved are the gateway's own paths, which no route may take.
var reserved = []string{"/whip/", "/whep/", "/v1/", "/metrics", "/healthz", "/certificate.sha256"}

// check validates and fills defaults. Errors name the field.
func (c *Config) check() error {
	if c.StreamHeader == "" {
		c.StreamHeader = "X-Stream-Id"
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		field := fmt.Sprintf("gateway.proxy.routes[%d]", i)
		if !strings.HasPrefix(r.Prefix, "/") || r.Prefix == "/" {
			return fmt.Errorf("%s.prefix: %q must start with / and name more than the root", field, r.Prefix)
		}
		for _, p := range reserved {
			if strings.HasPrefix(r.Prefix, p) || strings.HasPrefix(p, r.Prefix) {
				return fmt.Errorf("%s.prefix: %q overlaps the gateway's own %s", field, r.Prefix, p)
			}
		}
		if r.Rewrite != "" && !strings.HasPrefix(r.Rewrite, "/") {
			return fmt.Errorf("%s.rewrite: %q must start with /", field, r.Rewrite)
		}
		if r.Service == "" {
			r.Service = "default"
		}
		if r.MaxBody == 0 {
			r.MaxBody = 10 << 20
		}
		if r.Origin != "" {
			u, err := url.Parse(r.Origin)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s.origin: %q is not an http:// or https:// URL", field, r.Origin)
			}
		}
		if r.MaxBody < 0 || r.Timeout < 0 {
			return fmt.Errorf("%s: maxBody and timeout must not be negative", field)
		}
		switch kind, arg, _ := strings.Cut(r.Stream, ":"); kind {
		case "", "header":
		case "path":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 {
				return fmt.Errorf("%s.stream: %q: want path:N with N ≥ 1", field, r.Stream)
			}
			r.streamSeg = n
		case "query":
			if arg == "" {
				return fmt.Errorf("%s.stream: %q: want query:NAME", field, r.Stream)
			}
			r.streamQuery = arg
		default:
			return fmt.Errorf("%s.stream: %q: want header, path:N or query:NAME", field, r.Stream)
		}
		for j := range i {
			if c.Routes[j].Prefix == r.Prefix {
				return fmt.Errorf("%s.prefix: %q is also routes[%d]'s", field, r.Prefix, j)
			}
		}
	}
	return nil
}

// Locator is what the proxy needs of the session core.
type Locator interface {
	ProxyAgent(ctx context.Context, req session.ProxyRequest) (session.Agent, error)
	Admit(ctx context.Context, a session.Admission) (session.ThrottleOutput, bool, error)
}

// Proxy serves the routes.
type Proxy struct {
	cfg   Config
	loc   Locator
	log   *slog.Logger
	rp    *httputil.ReverseProxy
	tun   *tunnels
	cache mappings
	limit limiter
	m     *Metrics
}

// New checks cfg and makes the proxy.
func New(cfg Config, loc Locator, log *slog.Logger, m *Metrics) (*Proxy, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.AgentTLS == nil {
		return nil, errors.New("proxy: no TLS configuration for the agents")
	}
	p := &Proxy{cfg: cfg, loc: loc, log: log, m: m, tun: newTunnels(cfg.AgentTLS), cache: mappings{m: map[string]mapping{}},
		limit: limiter{limited: map[string]bool{}, inflight: map[string]int{}}}
	for i := range p.cfg.Routes {
		if o := p.cfg.Routes[i].Origin; o != "" {
			u, _ := url.Parse(o) // checked
			p.cfg.Routes[i].origin = newOriginProxy(u, p.fail)
		}
	}
	m.limited(p.limit.Limited)
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: &forwarder{p: p},
		// Flushed as they come when streamed (no length: gRPC, SSE), which
		// ReverseProxy does by itself; a short answer goes out in one write.
		BufferPool:     &copyBufs,
		ModifyResponse: trailersOnlyAsTrailers,
		ErrorHandler:   p.fail,
	}
	return p, nil
}

// Close closes the proxy's idle tunnels; calls still running end by
// themselves. The proxy serves no calls after Close.
func (p *Proxy) Close() { p.tun.close() }

// copyBufs are the body copy buffers of the gateway's proxy.
var copyBufs copybuf.Pool

// Match is the route for path, longest prefix first, or nil.
func (p *Proxy) Match(path string) *Route {
	var best *Route
	for i := range p.cfg.Routes {
		r := &p.cfg.Routes[i]
		if strings.HasPrefix(path, r.Prefix) && (best == nil || len(r.Prefix) > len(best.Prefix)) {
			best = r
		}
	}
	return best
}

// View is the proxy as the operator API shows it (GET /v1/proxy).
type View struct {
	Routes  []RouteView `json:"routes"`
	Limited []string    `json:"limitedUpstreams"` // "agent/service" under M2's 504 rule
}

// RouteView is one route in the View.
type RouteView struct {
	Prefix  string `json:"prefix"`
	Rewrite string `json:"rewrite,omitempty"`
	Service string `json:"service"`
	Stream  string `json:"stream"`
	Timeout string `json:"timeout,omitempty"`
	MaxBody int64  `json:"maxBody"`
	Origin  string `json:"origin,omitempty"`
}

// View reports the routes and the upstreams under the 504 rule.
func (p *Proxy) View() View {
	v := View{Limited: p.limit.Limited()}
	for _, r := range p.cfg.Routes {
		rv := RouteView{Prefix: r.Prefix, Rewrite: r.Rewrite, Service: r.Service, Stream: p.where(&r), MaxBody: r.MaxBody, Origin: r.Origin}
		if r.Timeout > 0 {
			rv.Timeout = r.Timeout.String()
		}
		v.Routes = append(v.Routes, rv)
	}
	return v
}

// Strays reports whether r names a stream (in the stream header) on a path no
// route and none of the gateway's own paths takes: a proxied call with a
// wrong path, which deserves a 404 that says so.
func (p *Proxy) Strays(r *http.Request) bool {
	if r.Header.Get(p.cfg.StreamHeader) == "" || r.URL.Path == "/" {
		return false
	}
	for _, own := range reserved {
		if strings.HasPrefix(r.URL.Path, own) {
			return false
		}
	}
	return true
}

// callKey carries a call's route and stream through the reverse proxy.
type callKey struct{}

type call struct {
	route  *Route
	stream string
	client string
	body   *watchedBody
}

// ServeHTTP proxies a call that Match gave a route.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := p.Match(r.URL.Path)
	if rt == nil {
		refuse(w, r, http.StatusNotFound, "no-route", "No proxy route takes the path", r.URL.Path)
		return
	}
	stream, err := p.streamOf(rt, r)
	if err != nil {
		refuse(w, r, http.StatusBadRequest, "bad-stream-id", "The call does not name a valid stream",
			fmt.Sprintf("route %s: %v", rt.Prefix, err))
		return
	}
	if r.ContentLength > rt.MaxBody {
		refuse(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "The request body is over the route's limit",
			fmt.Sprintf("route %s, stream %s: %d bytes, limit %d", rt.Prefix, stream, r.ContentLength, rt.MaxBody))
		return
	}
	if p.cfg.Authorize != nil && !p.cfg.Authorize(w, r, wire.KindProxy, stream) {
		return
	}
	c := &call{route: rt, stream: stream, client: clientHost(r.RemoteAddr)}
	if !p.admit(w, r, rt, stream, c.client) {
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		c.body = &watchedBody{rc: http.MaxBytesReader(w, r.Body, rt.MaxBody)}
		r.Body = c.body
	}
	ctx := context.WithValue(r.Context(), callKey{}, c)
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
		defer cancel()
	}
	p.m.calls.Inc()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Proxy) streamOf(rt *Route, r *http.Request) (string, error) {
	var id string
	switch {
	case rt.streamSeg > 0:
		segs := strings.Split(strings.TrimPrefix(r.URL.Path, rt.Prefix), "/")
		if rt.streamSeg <= len(segs) {
			id = segs[rt.streamSeg-1]
		}
	case rt.streamQuery != "":
		id = r.URL.Query().Get(rt.streamQuery)
	default:
		id = r.Header.Get(p.cfg.StreamHeader)
	}
	if id == "" {
		return "", errors.New("no stream id (" + p.where(rt) + ")")
	}
	if err := streamid.Validate(id); err != nil {
		return "", err
	}
	return id, nil
}

func (p *Proxy) where(rt *Route) string {
	switch {
	case rt.streamSeg > 0:
		return fmt.Sprintf("path segment %d after %s", rt.streamSeg, rt.Prefix)
	case rt.streamQuery != "":
		return "query parameter " + rt.streamQuery
	}
	return "header " + p.cfg.StreamHeader
}

// rewrite makes the call to the service: the path rewritten, the client's
// Host kept. The URL's host, which names the tunnel, is the forwarder's to
// choose.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	path := pr.In.URL.Path
	if c.route.Rewrite != "" {
		path = c.route.Rewrite + strings.TrimPrefix(path, c.route.Prefix)
		path = "/" + strings.TrimLeft(path, "/")
	}
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Path = path
	pr.Out.URL.RawPath = ""
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

// fail answers a call the gateway could not complete, naming the route and the
// stream.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	where := ""
	if c != nil {
		where = fmt.Sprintf("route %s, stream %s: ", c.route.Prefix, c.stream)
	}
	var se *session.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &se):
		p.m.failed.Inc()
		refuse(w, r, se.Status, se.Kind, se.Title, where+se.Detail)
	case c != nil && c.body != nil && errors.As(c.body.err, &mbe):
		refuse(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "The request body is over the route's limit",
			fmt.Sprintf("%slimit %d bytes", where, mbe.Limit))
	case r.Context().Err() == nil && isTunnelError(err):
		p.m.failed.Inc()
		p.log.Info("proxy: agent unreachable", "stream", c.streamOr(), "err", err)
		refuse(w, r, http.StatusBadGateway, "agent-unreachable", "The agent carrying the stream did not answer", where+"try again")
	case errors.Is(err, context.DeadlineExceeded):
		p.m.timeouts.Inc()
		refuse(w, r, http.StatusGatewayTimeout, "timeout", "The service did not answer in time", where+"the route's timeout passed")
	case r.Context().Err() != nil:
		p.m.cancelled.Inc() // the caller left: nobody to answer
	default:
		p.m.failed.Inc()
		p.log.Info("proxy: call failed", "stream", c.streamOr(), "err", err)
		refuse(w, r, http.StatusBadGateway, "agent-unreachable", "The agent carrying the stream did not answer", where+"try again")
	}
}

// refuse answers a call the gateway itself refuses: problem+json, or for a
// gRPC call the gRPC status that matches (a gRPC client reads no HTTP body),
// as a Trailers-Only response.
func refuse(w http.ResponseWriter, r *http.Request, status int, kind, title, detail string) {
	if !isGRPC(r) {
		problem.Write(w, status, kind, title, detail)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
	h.Set("Grpc-Message", url.PathEscape(title+": "+detail))
	w.WriteHeader(http.StatusOK)
}

// trailersOnlyAsTrailers turns a gRPC "Trailers-Only" response (an error
// status in the one header block, no body) into headers and trailers. Relayed
// as it came, the reverse proxy may flush the header block before it knows the
// body is empty, and the client then sees a response that ends without
// trailers (codes.Internal) instead of the service's status.
func trailersOnlyAsTrailers(res *http.Response) error {
	st := res.Header.Get("Grpc-Status")
	if st == "" || res.Trailer.Get("Grpc-Status") != "" {
		return nil
	}
	if res.Trailer == nil {
		res.Trailer = http.Header{}
	}
	for _, k := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		if v, ok := res.Header[k]; ok {
			res.Trailer[k] = v
			delete(res.Header, k)
		}
	}
	return nil
}

// isGRPC reports whether r is a gRPC call (its content type says so).
func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// grpcCode is the gRPC status for an HTTP status of the gateway's, as gRPC's
// own HTTP mapping has them.
func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 3 // INVALID_ARGUMENT
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusRequestEntityTooLarge:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

func (c *call) streamOr() string {
	if c == nil {
		return ""
	}
	return c.stream
}

// forwarder sends a call to the service on the agent that has its stream,
// through a tunnel. When no tunnel opens — the agent cannot be reached, or
// answers that the stream is not there (any more) — the call has gone nowhere:
// it forgets the mapping and tries once more, since the stream may have moved,
// or its agent died and the call places it anew.
type forwarder struct{ p *Proxy }

func (f *forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	c := req.Context().Value(callKey{}).(*call)
	avoid := ""
	relearned := false
	for attempt := 0; ; attempt++ {
		a, err := f.p.agentFor(req, c, avoid)
		if err != nil {
			return nil, err
		}
		key := a.ID + "/" + c.route.Service
		if !f.p.limit.acquire(key) {
			f.p.m.limited504.Inc()
			return nil, &session.Error{Status: http.StatusGatewayTimeout, Kind: "upstream-limited", Title: "The service is held to 2 calls at once",
				Detail: "it answered 504 and has not answered 200 since (M2's 504 rule)"}
		}
		// A shallow copy, as WithContext makes: the reverse proxy's
		// request is its own, and only the URL's host differs per try.
		out := req.WithContext(req.Context())
		u := *req.URL
		u.Host = tunnelHost(a.API, c.route.Service, c.stream)
		out.URL = &u
		if out.Body != nil && out.Body != http.NoBody {
			// A transport closes the body of a call that failed, and the
			// reverse proxy's body cannot be read once closed; a call whose
			// tunnel did not open goes again with the same body.
			out.Body = io.NopCloser(req.Body)
		}
		resp, err := f.p.tun.transport(a.API, c.route.Service, out).RoundTrip(out)
		if err != nil {
			f.p.limit.release(key)
		} else {
			f.p.limit.answered(key, resp.StatusCode)
			resp.Body = releasing(resp.Body, func() { f.p.limit.release(key) })
		}
		te, refused := asTunnelError(err)
		if !refused {
			return resp, err
		}
		again := attempt == 0 && !c.body.touched() && req.Context().Err() == nil
		switch st := te.Answer.Status; {
		case st == http.StatusHTTPVersionNotSupported && !relearned:
			relearned = true // the transport now speaks what the service does
			attempt--
			continue
		case (st == 0 || st == http.StatusServiceUnavailable) && again:
			f.p.cache.forget(c.stream, a.ID)
			avoid = a.ID
			f.p.m.replaced.Inc()
			continue
		case st == http.StatusMisdirectedRequest && again:
			f.p.cache.forget(c.stream, a.ID)
			f.p.m.replaced.Inc()
			continue
		}
		return nil, refusal(te, c)
	}
}

// refusal is the error a call gets for an agent's refusal of its tunnel, as
// the agent answered it when it proxied calls itself; an agent that could not
// be reached stays a tunnel error (502).
func refusal(te *tunnelError, c *call) error {
	switch te.Answer.Status {
	case http.StatusNotFound:
		return &session.Error{Status: http.StatusNotFound, Kind: "no-service", Title: "No such service on this agent", Detail: "service " + c.route.Service}
	case http.StatusBadGateway:
		return &session.Error{Status: http.StatusBadGateway, Kind: "service-down", Title: "The service did not answer",
			Detail: fmt.Sprintf("service %s is not answering", c.route.Service)}
	case http.StatusMisdirectedRequest:
		return &session.Error{Status: http.StatusMisdirectedRequest, Kind: "stream-not-here", Title: "The stream is not on this agent", Detail: "stream " + c.stream}
	}
	return te
}

func isTunnelError(err error) bool {
	_, ok := asTunnelError(err)
	return ok
}

// agentFor is the agent for the call's stream: remembered, else asked.
func (p *Proxy) agentFor(req *http.Request, c *call, avoid string) (session.Agent, error) {
	if a, ok := p.cache.get(c.stream); ok && a.ID != avoid {
		return a, nil
	}
	a, err := p.loc.ProxyAgent(req.Context(), session.ProxyRequest{Stream: c.stream, Client: c.client, Avoid: avoid,
		Headers: map[string]string{p.cfg.StreamHeader: c.stream}})
	if err != nil {
		return session.Agent{}, err
	}
	p.cache.put(c.stream, a)
	return a, nil
}

// watchedBody is a request body that remembers whether any of it was read
// (then a call cannot be sent again) and the error that ended it. Close is the
// server's: the transport closing it after a failed try must not end it.
type watchedBody struct {
	rc   io.ReadCloser
	mu   sync.Mutex
	read bool
	err  error
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.read = b.read || n > 0
	if err != nil && err != io.EOF {
		b.err = err
	}
	b.mu.Unlock()
	return n, err
}

func (b *watchedBody) Close() error { return nil }

func (b *watchedBody) touched() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// mappings remember which agent has a stream, for a short while: the agents
// are the record (every gateway asks them), and an agent that no longer has
// the stream answers 421, so a stale entry costs one more round trip.
type mappings struct {
	mu    sync.Mutex
	m     map[string]mapping
	sweep time.Time
}

type mapping struct {
	a  session.Agent
	at time.Time
}

// mappingTTL bounds how long calls follow a remembered agent before asking
// again: a stream whose media starts on another agent is followed within it.
const mappingTTL = 5 * time.Second

func (m *mappings) get(stream string) (session.Agent, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[stream]
	if !ok || time.Since(e.at) > mappingTTL {
		return session.Agent{}, false
	}
	return e.a, true
}

func (m *mappings) put(stream string, a session.Agent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if now.Sub(m.sweep) > time.Minute {
		for k, e := range m.m {
			if now.Sub(e.at) > mappingTTL {
				delete(m.m, k)
			}
		}
		m.sweep = now
	}
	m.m[stream] = mapping{a, now}
}

func (m *mappings) forget(stream, agent string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m[stream].a.ID == agent {
		delete(m.m, stream)
	}
}

func clientHost(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		return strings.Trim(remote[:i], "[]")
	}
	return remote
}
