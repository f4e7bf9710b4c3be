package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// session is a WHIP or WHEP resource.
type session interface {
	resource() string
	etag() string
	pc() *webrtc.PeerConnection
	streamID() string
	kind() string
	close(reason string)
}

// httpError is a failure with the problem it answers.
type httpError struct {
	status              int
	kind, title, detail string
}

func (e *httpError) Error() string { return e.title + ": " + e.detail }

func writeErr(w http.ResponseWriter, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		problem.Write(w, he.status, he.kind, he.title, he.detail)
	case errors.Is(err, errNotLive):
		problem.Write(w, http.StatusNotFound, "stream-not-live", "The stream is not live", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		problem.Write(w, http.StatusServiceUnavailable, "timeout", "The request timed out", err.Error())
	default:
		problem.Write(w, http.StatusInternalServerError, "internal", "Internal error", err.Error())
	}
}

func (g *Gateway) routes(set metricsWriter) http.Handler {
	mux := http.NewServeMux()
	for _, proto := range []string{"whip", "whep"} {
		mux.HandleFunc("POST /"+proto+"/{stream}", g.handleOffer)
		mux.HandleFunc("PATCH /"+proto+"/{stream}/{res}", g.handlePatch)
		mux.HandleFunc("DELETE /"+proto+"/{stream}/{res}", g.handleDelete)
		mux.HandleFunc("OPTIONS /"+proto+"/{stream}", g.handleOptions)
		mux.HandleFunc("OPTIONS /"+proto+"/{stream}/{res}", g.handleOptions)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", g.handleReady)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		set.WritePrometheus(w)
		writeProcessMetrics(w)
	})
	mux.HandleFunc("GET /v1/cluster", g.handleCluster)
	mux.HandleFunc("GET /v1/streams", g.handleStreams)
	mux.HandleFunc("GET /v1/streams/{stream}", g.handleStream)
	g.nodesRoutes(mux)
	mux.Handle("GET /", dashboard())
	for _, r := range g.extras {
		mux.Handle(r.pattern, r.h)
	}
	return g.cors(g.authAPI(mux))
}

// cors lets pages from the configured origins use WHIP, WHEP and the API, and
// exposes the headers a WHIP client must read.
func (g *Gateway) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && g.originAllowed(origin) {
			h := w.Header()
			if len(g.cfg.CORSOrigins) == 1 && g.cfg.CORSOrigins[0] == "*" {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Content-Type")
		}
		next.ServeHTTP(w, r)
	})
}

// authAPI demands the API token on /v1/ when one is configured.
func (g *Gateway) authAPI(next http.Handler) http.Handler {
	if g.cfg.APIToken == "" {
		return next
	}
	want := "Bearer " + g.cfg.APIToken
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") && r.Method != http.MethodOptions &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			problem.Write(w, http.StatusUnauthorized, "unauthorized", "An API token is required", "send Authorization: Bearer <gateway.apiToken>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) originAllowed(origin string) bool {
	for _, o := range g.cfg.CORSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func (g *Gateway) handleOptions(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, If-Match, "+g.cfg.StreamHeader)
	h.Set("Access-Control-Max-Age", "600")
	h.Set("Accept-Post", "application/sdp")
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusNoContent)
}

// readBody enforces the content type and size limit of an offer or a PATCH.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, want string) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		problem.Write(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Wrong Content-Type",
			"this resource takes "+want+", not "+strings.TrimSpace(r.Header.Get("Content-Type")))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxOfferBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem.Write(w, http.StatusRequestEntityTooLarge, "body-too-large", "The body is too large",
				"bodies are limited to "+itoa(int(g.cfg.MaxOfferBytes))+" bytes")
		} else {
			problem.Write(w, http.StatusBadRequest, "bad-body", "The body could not be read", err.Error())
		}
		return nil, false
	}
	return body, true
}

// handleOffer serves POST /whip/{stream} and POST /whep/{stream}.
func (g *Gateway) handleOffer(w http.ResponseWriter, r *http.Request) {
	publish := strings.HasPrefix(r.URL.Path, "/whip/")
	proto := "whep"
	if publish {
		proto = "whip"
	}
	stream := r.PathValue("stream")
	if err := streamid.Validate(stream); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return
	}
	body, ok := g.readBody(w, r, "application/sdp")
	if !ok {
		return
	}
	info, err := checkOffer(body, publish)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-sdp", "The SDP offer is not usable", err.Error())
		return
	}
	client := clientAddr(r)
	kind := wire.KindPlay
	if publish {
		kind = wire.KindPublish
	}
	if !g.admit(w, r, kind, stream, proto, client) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	res := newResourceID()
	var answer string
	if publish {
		answer, err = g.publish(ctx, stream, res, client, g.routeHeaders(r), info, string(body))
	} else {
		answer, err = g.play(ctx, stream, res, client, string(body))
	}
	if err != nil {
		g.m.refused.Inc()
		writeErr(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+proto+"/"+stream+"/"+res)
	h.Set("ETag", `"`+res+`"`)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// routeHeaders picks the request headers the route policy may see.
func (g *Gateway) routeHeaders(r *http.Request) map[string]string {
	var h map[string]string
	for _, name := range g.cfg.RouteHeaders {
		if v := r.Header.Get(name); v != "" {
			if h == nil {
				h = map[string]string{}
			}
			h[http.CanonicalHeaderKey(name)] = v
		}
	}
	return h
}

func (g *Gateway) publish(ctx context.Context, stream, res, client string, headers map[string]string, info offerInfo, offer string) (string, error) {
	p := &publisher{g: g, stream: stream, res: res, etagV: `"` + res + `"`, expect: info.media, client: client, protocol: "whip", headers: headers, started: time.Now()}
	p.ctx, p.cancel = context.WithCancel(g.ctx)
	g.mu.Lock()
	if _, busy := g.pubs[stream]; busy {
		g.mu.Unlock()
		p.cancel()
		return "", &httpError{status: http.StatusConflict, kind: "stream-busy", title: "The stream already has a publisher", detail: "stream " + stream + " is being published through this gateway"}
	}
	g.pubs[stream] = p
	g.mu.Unlock()
	release := func() {
		p.cancel()
		g.mu.Lock()
		if g.pubs[stream] == p {
			delete(g.pubs, stream)
		}
		g.mu.Unlock()
	}
	// One publisher per stream across the cluster: a stream live through another
	// gateway is refused here too.
	if pl, err := g.locate(ctx, stream); err == nil {
		g.closeAgentSession(pl)
		release()
		return "", &httpError{status: http.StatusConflict, kind: "stream-busy", title: "The stream already has a publisher", detail: "stream " + stream + " is live on agent " + pl.Agent}
	}
	answer, err := g.startPublish(ctx, p, offer)
	if err != nil {
		release()
		return "", err
	}
	g.mu.Lock()
	g.sessions[res] = p
	g.mu.Unlock()
	g.m.publishers.Inc()
	return answer, nil
}

func (g *Gateway) play(ctx context.Context, stream, res, client, offer string) (string, error) {
	sub, err := g.subscribe(ctx, stream)
	if err != nil {
		return "", err
	}
	v := &viewer{g: g, sub: sub, stream: stream, res: res, etagV: `"` + res + `"`, client: client, started: time.Now()}
	answer, err := sub.addViewer(ctx, v, offer)
	if err != nil {
		sub.mu.Lock()
		idle := len(sub.viewers) == 0
		sub.mu.Unlock()
		if idle {
			sub.cancel()
		}
		return "", err
	}
	g.mu.Lock()
	g.sessions[res] = v
	g.mu.Unlock()
	return answer, nil
}

// endSession removes a session from the table and closes it.
func (g *Gateway) endSession(s session, reason string) {
	g.mu.Lock()
	if g.sessions[s.resource()] == s {
		delete(g.sessions, s.resource())
		if p, ok := s.(*publisher); ok {
			if g.pubs[p.stream] == p {
				delete(g.pubs, p.stream)
			}
			g.m.publishers.Dec()
		}
	}
	g.mu.Unlock()
	go s.close(reason)
}

func (g *Gateway) lookupSession(w http.ResponseWriter, r *http.Request) session {
	g.mu.Lock()
	s := g.sessions[r.PathValue("res")]
	g.mu.Unlock()
	wantKind := wire.KindPlay
	if strings.HasPrefix(r.URL.Path, "/whip/") {
		wantKind = wire.KindPublish
	}
	if s == nil || s.streamID() != r.PathValue("stream") || s.kind() != wantKind {
		problem.Write(w, http.StatusNotFound, "no-session", "No such session", "there is no session at "+r.URL.Path)
		return nil
	}
	return s
}

// handlePatch applies trickled ICE candidates (RFC 9725 §4.3). ICE restarts are
// not supported and answer 422, as the RFC asks.
func (g *Gateway) handlePatch(w http.ResponseWriter, r *http.Request) {
	s := g.lookupSession(w, r)
	if s == nil {
		return
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != s.etag() {
		problem.Write(w, http.StatusPreconditionFailed, "etag-mismatch", "The session has changed", "If-Match "+im+" does not match "+s.etag())
		return
	}
	body, ok := g.readBody(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	cands, ufrag, err := candidatesFromFrag(string(body))
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-sdpfrag", "The SDP fragment is malformed", err.Error())
		return
	}
	if r.Header.Get("If-Match") == "*" || ufrag != "" && ufrag != remoteUfrag(s.pc()) {
		problem.Write(w, http.StatusUnprocessableEntity, "ice-restart-unsupported", "ICE restarts are not supported", "make a new session instead")
		return
	}
	for _, c := range cands {
		if err := s.pc().AddICECandidate(c); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad-candidate", "An ICE candidate was refused", err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func remoteUfrag(pc *webrtc.PeerConnection) string {
	rd := pc.RemoteDescription()
	if rd == nil {
		return ""
	}
	for _, line := range strings.Split(rd.SDP, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

func (g *Gateway) handleDelete(w http.ResponseWriter, r *http.Request) {
	s := g.lookupSession(w, r)
	if s == nil {
		return
	}
	g.endSession(s, "deleted by client")
	w.WriteHeader(http.StatusOK)
}

// ServingAgents is the number of agents the gateway could place a stream on now.
func (g *Gateway) ServingAgents() int {
	n := 0
	for _, a := range g.agentsView() {
		if a.Cand.State == wire.StateServing && len(a.Cand.Purposes) > 0 {
			n++
		}
	}
	return n
}

func (g *Gateway) handleReady(w http.ResponseWriter, _ *http.Request) {
	n := g.ServingAgents()
	if n == 0 {
		problem.Write(w, http.StatusServiceUnavailable, "not-ready", "No agent is serving", "the gateway sees no serving agent in the cluster")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "agents": n})
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func newResourceID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
