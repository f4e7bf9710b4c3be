package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

func (g *Gateway) routes(set metricsWriter) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{stream}", g.handleWHIP)
	mux.HandleFunc("POST /whep/{stream}", g.handleWHEP)
	for _, proto := range []string{"whip", "whep"} {
		mux.HandleFunc("PATCH /"+proto+"/{stream}/{res}", g.handlePatch)
		mux.HandleFunc("DELETE /"+proto+"/{stream}/{res}", g.handleDelete)
		mux.HandleFunc("OPTIONS /"+proto+"/{stream}", g.handleOptions)
		mux.HandleFunc("OPTIONS /"+proto+"/{stream}/{res}", g.handleOptions)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		problem.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
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

// httpError is a failure with the problem it answers.
type httpError struct {
	status              int
	kind, title, detail string
}

func (e *httpError) Error() string { return e.title + ": " + e.detail }

// errNotLive is returned when a stream is not published anywhere in the cluster.
var errNotLive = errors.New("stream is not live")

func errNotLiveWithin(wait fmt.Stringer) error {
	return fmt.Errorf("%w: no tracks announced within %s", errNotLive, wait)
}

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
				"bodies are limited to "+strconv.FormatInt(g.cfg.MaxOfferBytes, 10)+" bytes")
		} else {
			problem.Write(w, http.StatusBadRequest, "bad-body", "The body could not be read", err.Error())
		}
		return nil, false
	}
	return body, true
}

// offer is a WHIP or WHEP request that passed its checks and admission.
type offer struct {
	stream, client, sdp string
	info                offerInfo
}

// readOffer checks a WHIP (publish) or WHEP request — stream id, body, SDP,
// admission — and answers for it when it fails.
func (g *Gateway) readOffer(w http.ResponseWriter, r *http.Request, publish bool) (offer, bool) {
	stream := r.PathValue("stream")
	if err := streamid.Validate(stream); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return offer{}, false
	}
	body, ok := g.readBody(w, r, "application/sdp")
	if !ok {
		return offer{}, false
	}
	info, err := checkOffer(body, publish)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-sdp", "The SDP offer is not usable", err.Error())
		return offer{}, false
	}
	a := admission{kind: wire.KindPlay, stream: stream, path: r.URL.Path, protocol: "whep", client: clientAddr(r)}
	if publish {
		a.kind, a.protocol = wire.KindPublish, "whip"
	}
	out, admitted, err := g.admit(r.Context(), a)
	switch {
	case err != nil:
		problem.Write(w, http.StatusServiceUnavailable, "throttle-failed", "Admission failed", err.Error())
	case !admitted:
		writeThrottled(w, out)
	}
	return offer{stream: stream, client: a.client, sdp: string(body), info: info}, err == nil && admitted
}

// writeThrottled answers a request the throttle policy did not admit.
func writeThrottled(w http.ResponseWriter, out ThrottleOutput) {
	if out.Action == Redirect {
		w.Header().Set("Location", out.URL)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	ct := out.ContentType
	if ct == "" {
		ct = "application/json"
	}
	status := out.Status
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(out.Body)
}

// writeCreated answers a WHIP or WHEP offer with its resource (RFC 9725 §4.2).
func writeCreated(w http.ResponseWriter, proto, stream, res, answer string) {
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+proto+"/"+stream+"/"+res)
	h.Set("ETag", etagOf(res))
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func etagOf(res string) string { return `"` + res + `"` }

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

// resource is a WHIP or WHEP session: the HTTP resource its Location names.
type resource interface {
	resource() string
	pc() *webrtc.PeerConnection
	streamID() string
	kind() string
	close(reason string)
}

func (g *Gateway) addResource(s resource) {
	g.mu.Lock()
	g.resources[s.resource()] = s
	g.mu.Unlock()
}

// endResource removes a session from the table and closes it.
func (g *Gateway) endResource(s resource, reason string) {
	g.mu.Lock()
	if g.resources[s.resource()] == s {
		delete(g.resources, s.resource())
	}
	g.mu.Unlock()
	go s.close(reason)
}

func (g *Gateway) lookupResource(w http.ResponseWriter, r *http.Request) resource {
	g.mu.Lock()
	s := g.resources[r.PathValue("res")]
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
	s := g.lookupResource(w, r)
	if s == nil {
		return
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etagOf(s.resource()) {
		problem.Write(w, http.StatusPreconditionFailed, "etag-mismatch", "The session has changed", "If-Match "+im+" does not match "+etagOf(s.resource()))
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
	s := g.lookupResource(w, r)
	if s == nil {
		return
	}
	g.endResource(s, "deleted by client")
	w.WriteHeader(http.StatusOK)
}

func (g *Gateway) handleReady(w http.ResponseWriter, _ *http.Request) {
	n := g.ServingAgents()
	if n == 0 {
		problem.Write(w, http.StatusServiceUnavailable, "not-ready", "No agent is serving", "the gateway sees no serving agent in the cluster")
		return
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "agents": n})
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
