package whip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// writeErr answers a failure as a problem: the core's refusals with their own
// status and kind, anything else as a timeout or an internal error.
func writeErr(w http.ResponseWriter, err error) {
	var se *session.Error
	switch {
	case errors.As(err, &se):
		problem.Write(w, se.Status, se.Kind, se.Title, se.Detail)
	case errors.Is(err, session.ErrNotLive):
		problem.Write(w, http.StatusNotFound, "stream-not-live", "The stream is not live", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		problem.Write(w, http.StatusServiceUnavailable, "timeout", "The request timed out", err.Error())
	default:
		problem.Write(w, http.StatusInternalServerError, "internal", "Internal error", err.Error())
	}
}

func (srv *Server) handleOptions(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, If-Match, "+srv.cfg.StreamHeader)
	h.Set("Access-Control-Max-Age", "600")
	h.Set("Accept-Post", "application/sdp")
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	for _, l := range srv.links {
		h.Add("Link", l)
	}
	w.WriteHeader(http.StatusNoContent)
}

// readBody enforces the content type and size limit of an offer or a PATCH.
func (srv *Server) readBody(w http.ResponseWriter, r *http.Request, want string) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		problem.Write(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Wrong Content-Type",
			"this resource takes "+want+", not "+strings.TrimSpace(r.Header.Get("Content-Type")))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, srv.cfg.MaxOfferBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem.Write(w, http.StatusRequestEntityTooLarge, "body-too-large", "The body is too large",
				"bodies are limited to "+strconv.FormatInt(srv.cfg.MaxOfferBytes, 10)+" bytes")
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
func (srv *Server) readOffer(w http.ResponseWriter, r *http.Request, publish bool) (offer, bool) {
	stream := r.PathValue("stream")
	if err := streamid.Validate(stream); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return offer{}, false
	}
	body, ok := srv.readBody(w, r, "application/sdp")
	if !ok {
		return offer{}, false
	}
	info, err := checkOffer(body, publish)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-sdp", "The SDP offer is not usable", err.Error())
		return offer{}, false
	}
	a := session.Admission{Kind: wire.KindPlay, Stream: stream, Path: r.URL.Path, Protocol: "whep", Client: clientAddr(r)}
	if publish {
		a.Kind, a.Protocol = wire.KindPublish, "whip"
	}
	out, admitted, err := srv.core.Admit(r.Context(), a)
	switch {
	case err != nil:
		problem.Write(w, http.StatusServiceUnavailable, "throttle-failed", "Admission failed", err.Error())
	case !admitted:
		session.WriteThrottled(w, out)
	}
	return offer{stream: stream, client: a.Client, sdp: string(body), info: info}, err == nil && admitted
}

// writeCreated answers a WHIP or WHEP offer with its resource (RFC 9725 §4.2)
// and the ICE servers the client may use (§4.6).
func (srv *Server) writeCreated(w http.ResponseWriter, proto, stream, res, answer string) {
	h := w.Header()
	for _, l := range srv.links {
		h.Add("Link", l)
	}
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+proto+"/"+stream+"/"+res)
	h.Set("ETag", etagOf(res))
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func etagOf(res string) string { return `"` + res + `"` }

// routeHeaders picks the request headers the route policy may see.
func (srv *Server) routeHeaders(r *http.Request) map[string]string {
	var h map[string]string
	for _, name := range srv.cfg.RouteHeaders {
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
	ice() *iceState
}

func (srv *Server) addResource(s resource) {
	srv.mu.Lock()
	srv.resources[s.resource()] = s
	srv.mu.Unlock()
}

// endResource removes a session from the table and closes it.
func (srv *Server) endResource(s resource, reason string) {
	srv.mu.Lock()
	if srv.resources[s.resource()] == s {
		delete(srv.resources, s.resource())
	}
	srv.mu.Unlock()
	go s.close(reason)
}

func (srv *Server) lookupResource(w http.ResponseWriter, r *http.Request) resource {
	srv.mu.Lock()
	s := srv.resources[r.PathValue("res")]
	srv.mu.Unlock()
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

func (srv *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	s := srv.lookupResource(w, r)
	if s == nil {
		return
	}
	srv.endResource(s, "deleted by client")
	w.WriteHeader(http.StatusOK)
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
