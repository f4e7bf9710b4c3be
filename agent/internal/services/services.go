// Package services is the agent's side of the edge proxy: it splices the
// tunnels gateways open for proxied calls to the operator's own per-stream
// services beside the agent (SDR's port mapping), holds the streams that have
// calls but no media here, and calls the services' add and remove hooks (SDR's
// add and delete URLs). gateway/internal/proxy/RATIONALE.md says why it is
// built this way.
package services

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// Config is the operator's own per-stream services beside the agent (an
// inference service, a thumbnailer, a stats API), which gateways proxy HTTP and
// gRPC calls to by stream id: SDR's port mapping (Upstreams) and its add and
// delete URLs (Hooks).
type Config struct {
	// Upstreams maps a service name to its address. "host:port" speaks
	// HTTP/1.1, and HTTP/2 without TLS for gRPC calls; "http://host:port" only
	// HTTP/1.1; "h2c://host:port" only HTTP/2 without TLS. The gateway speaks
	// the protocol through its tunnel; the agent tells it which one a service
	// takes.
	Upstreams map[string]string
	// Hooks are paths on the "default" service that the agent POSTs a
	// wire.ServiceHook to when a stream comes to it or leaves it.
	Hooks Hooks
	// Idle lets a stream held for proxied calls alone (no media here) go after
	// this long without one. Default 10m.
	Idle time.Duration
}

// Hooks are the add and remove paths; "" calls nothing.
type Hooks struct{ Add, Remove string }

// WithDefaults fills the defaults of s and checks it; errors name the field.
func (s Config) WithDefaults() (Config, error) {
	if s.Idle == 0 {
		s.Idle = 10 * time.Minute
	}
	if s.Idle < 0 {
		return s, fmt.Errorf("agent.serviceIdle: %s is negative", s.Idle)
	}
	for name, addr := range s.Upstreams {
		if streamid.Validate(name) != nil {
			return s, fmt.Errorf("agent.services.%s: not a valid service name (letters, digits, - _ .)", name)
		}
		if _, _, err := parseUpstream(addr); err != nil {
			return s, fmt.Errorf("agent.services.%s: %w", name, err)
		}
	}
	for field, p := range map[string]string{"add": s.Hooks.Add, "remove": s.Hooks.Remove} {
		if p == "" {
			continue
		}
		if !strings.HasPrefix(p, "/") {
			return s, fmt.Errorf("agent.serviceHooks.%s: %q is not a path (want /…)", field, p)
		}
		if _, ok := s.Upstreams["default"]; !ok {
			return s, fmt.Errorf("agent.serviceHooks.%s: hooks are called on the default service, and agent.services has no default", field)
		}
	}
	return s, nil
}

// parseUpstream reads a service address: its host:port and whether HTTP/1.1
// and HTTP/2 (without TLS) may be used.
func parseUpstream(addr string) (hostport string, mode upstreamMode, err error) {
	mode = upstreamBoth
	if i := strings.Index(addr, "://"); i >= 0 {
		switch addr[:i] {
		case "http":
			mode = upstreamH1
		case "h2c":
			mode = upstreamH2C
		default:
			return "", 0, fmt.Errorf("%q: scheme %s (want http:// or h2c://, or none)", addr, addr[:i])
		}
		addr = addr[i+3:]
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	return addr, mode, nil
}

type upstreamMode int

const (
	upstreamBoth upstreamMode = iota // HTTP/1.1, and HTTP/2 without TLS for gRPC
	upstreamH1
	upstreamH2C
)

// Proxy splices gateways' tunnels to the upstreams, holds streams for calls
// and calls the hooks. Lock order: the manager's state lock, then mu
// (StreamChanged); never the reverse.
type Proxy struct {
	cfg     Config
	agentID string
	log     *slog.Logger
	live    func(id string) (wire.StreamInfo, bool) // the stream's media, if live here
	up      map[string]*upstream
	hookc   *http.Client

	hooksTo string // the default service's host:port, where hooks go

	mu      sync.Mutex
	held    map[string]time.Time            // streams held for proxied calls alone → their last call
	tunnels map[string]map[*tunnel]struct{} // open tunnels by stream
	closed  bool                            // Run has ended: no more tunnels
	queue   []hookCall                      // hooks to call, in order
	wake    chan struct{}
}

type hookCall struct {
	path string
	body wire.ServiceHook
}

type upstream struct {
	name, hostport string
	mode           upstreamMode
}

// speaks reports whether the service takes proto (wire.TunnelH1 or
// wire.TunnelH2C).
func (u *upstream) speaks(proto string) bool {
	switch u.mode {
	case upstreamH1:
		return proto == wire.TunnelH1
	case upstreamH2C:
		return proto == wire.TunnelH2C
	}
	return true
}

// only is the one protocol a service that takes one speaks.
func (u *upstream) only() string {
	if u.mode == upstreamH2C {
		return wire.TunnelH2C
	}
	return wire.TunnelH1
}

// New makes the agent's side of the proxy for cfg (checked by WithDefaults);
// live says whether a stream's media is live on the agent. Nothing runs until
// Run.
func New(cfg Config, agentID string, log *slog.Logger, live func(string) (wire.StreamInfo, bool)) *Proxy {
	s := &Proxy{cfg: cfg, agentID: agentID, log: log, live: live, up: map[string]*upstream{},
		held: map[string]time.Time{}, tunnels: map[string]map[*tunnel]struct{}{}, wake: make(chan struct{}, 1),
		// Its own transport, so that Run's end can close the hooks'
		// connection without touching anyone else's.
		hookc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{IdleConnTimeout: time.Minute}}}
	s.hooksTo, _, _ = parseUpstream(cfg.Upstreams["default"]) // "" without one: no hooks
	for name, addr := range cfg.Upstreams {
		hostport, mode, _ := parseUpstream(addr) // checked by WithDefaults
		s.up[name] = &upstream{name: name, hostport: hostport, mode: mode}
	}
	return s
}

// here says whether calls for stream belong to this agent: its media is live
// here, or a gateway's route policy put it here for proxied calls.
func (s *Proxy) here(stream string, touch bool) (wire.ProxyStream, bool) {
	if _, ok := s.live(stream); ok {
		return wire.ProxyStream{Stream: stream, Agent: s.agentID, Media: true}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.held[stream]
	if !ok || time.Since(last) > s.cfg.Idle {
		return wire.ProxyStream{}, false
	}
	if touch {
		s.held[stream] = time.Now()
	}
	return wire.ProxyStream{Stream: stream, Agent: s.agentID}, true
}

// hold keeps stream here for proxied calls, calling the add hook when it is new
// to the agent.
func (s *Proxy) hold(stream string) wire.ProxyStream {
	if ps, ok := s.here(stream, true); ok {
		return ps
	}
	s.mu.Lock()
	s.held[stream] = time.Now()
	s.enqueueLocked(s.cfg.Hooks.Add, wire.ServiceHook{Stream: stream, Agent: s.agentID, Reason: "proxy"})
	s.mu.Unlock()
	return wire.ProxyStream{Stream: stream, Agent: s.agentID}
}

// StreamChanged is the stream table's news of media streams (under its lock).
func (s *Proxy) StreamChanged(si wire.StreamInfo, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.held[si.Stream]
	switch {
	case live && !held:
		s.enqueueLocked(s.cfg.Hooks.Add, wire.ServiceHook{Stream: si.Stream, Agent: s.agentID, Node: si.Node, Media: si.Media, Reason: "media"})
	case !live && !held:
		s.enqueueLocked(s.cfg.Hooks.Remove, wire.ServiceHook{Stream: si.Stream, Agent: s.agentID, Node: si.Node, Reason: "ended"})
		s.closeTunnelsLocked(si.Stream) // the gateways' next calls look again
	}
}

func (s *Proxy) enqueueLocked(path string, h wire.ServiceHook) {
	if path == "" || s.up["default"] == nil {
		return
	}
	s.queue = append(s.queue, hookCall{path, h})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run calls the hooks in order and lets idle held streams go, until ctx ends;
// then it closes every tunnel, refuses new ones and tells the services that
// every held stream leaves.
func (s *Proxy) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for id := range s.held {
				s.enqueueLocked(s.cfg.Hooks.Remove, wire.ServiceHook{Stream: id, Agent: s.agentID, Reason: "shutdown"})
			}
			s.held = map[string]time.Time{}
			s.closed = true
			for id := range s.tunnels {
				s.closeTunnelsLocked(id)
			}
			s.mu.Unlock()
			s.callHooks(context.Background())
			s.hookc.CloseIdleConnections()
			return
		case <-tick.C:
			s.expire()
		case <-s.wake:
		}
		s.callHooks(ctx)
	}
}

func (s *Proxy) expire() {
	s.mu.Lock()
	s.touchActiveLocked()
	var gone []string
	for id, last := range s.held {
		if time.Since(last) > s.cfg.Idle {
			delete(s.held, id)
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	// The stream table calls StreamChanged under its lock, which takes s.mu:
	// ask it with s.mu released.
	for _, id := range gone {
		if _, media := s.live(id); !media {
			s.mu.Lock()
			if _, again := s.held[id]; !again {
				s.enqueueLocked(s.cfg.Hooks.Remove, wire.ServiceHook{Stream: id, Agent: s.agentID, Reason: "idle"})
				s.closeTunnelsLocked(id)
			}
			s.mu.Unlock()
		}
	}
}

// callHooks POSTs the queued hooks to the default service, one at a time. A
// service that is down misses them (logged): hooks are notices, and a call for
// the stream still reaches the service.
func (s *Proxy) callHooks(ctx context.Context) {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		h := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		b, _ := json.Marshal(h.body)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req, err := http.NewRequestWithContext(cctx, http.MethodPost, "http://"+s.hooksTo+h.path, bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			var resp *http.Response
			if resp, err = s.hookc.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					err = fmt.Errorf("answered %d", resp.StatusCode)
				}
			}
		}
		cancel()
		if err != nil {
			s.log.Warn("agent: service hook failed", "path", h.path, "stream", h.body.Stream, "err", err)
		}
	}
}

func (s *Proxy) HandleGetStream(w http.ResponseWriter, r *http.Request) {
	ps, ok := s.here(r.PathValue("id"), false)
	if !ok {
		problem.Write(w, http.StatusNotFound, "stream-not-here", "The stream is not on this agent", "stream "+r.PathValue("id"))
		return
	}
	problem.WriteJSON(w, http.StatusOK, ps)
}

func (s *Proxy) HandleHoldStream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if streamid.Validate(id) != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Not a valid stream id", id)
		return
	}
	problem.WriteJSON(w, http.StatusOK, s.hold(id))
}
