package whip

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/problem"
)

// iceState is what a WHIP or WHEP resource keeps for PATCH: the generation of
// its ICE session, which names its entity tag, and the lock that lets one PATCH
// at a time touch its peer connection.
type iceState struct {
	mu  sync.Mutex
	gen int // ICE restarts so far
}

// etag is the resource's entity tag: the resource id, then a generation
// suffix once ICE has restarted (RFC 9725 §4.3.2 asks for a new one).
func (st *iceState) etag(res string) string {
	if st.gen == 0 {
		return etagOf(res)
	}
	return `"` + res + "." + strconv.Itoa(st.gen) + `"`
}

// handlePatch serves PATCH on a WHIP or WHEP resource (RFC 9725 §4.3): a
// fragment with the session's ICE credentials, or none, trickles candidates
// (204); one with new credentials, or sent with If-Match: *, restarts ICE and
// is answered 200 with the gateway's new credentials and candidates.
func (srv *Server) handlePatch(w http.ResponseWriter, r *http.Request) {
	s := srv.lookupResource(w, r)
	if s == nil {
		return
	}
	st := s.ice()
	st.mu.Lock()
	defer st.mu.Unlock()
	im := r.Header.Get("If-Match")
	if im != "" && im != "*" && im != st.etag(s.resource()) {
		problem.Write(w, http.StatusPreconditionFailed, "etag-mismatch", "The session has changed", "If-Match "+im+" does not match "+st.etag(s.resource()))
		return
	}
	body, ok := srv.readBody(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	f, err := parseFrag(string(body))
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-sdpfrag", "The SDP fragment is malformed", err.Error())
		return
	}
	current := remoteUfrag(s.pc())
	if im != "*" && (f.ufrag == "" || f.ufrag == current) {
		srv.trickle(w, s, f)
		return
	}
	if f.ufrag == "" || f.pwd == "" || f.ufrag == current {
		problem.Write(w, http.StatusBadRequest, "bad-sdpfrag", "An ICE restart needs new credentials",
			"an ICE restart (If-Match: * or a new a=ice-ufrag) carries a new a=ice-ufrag and a=ice-pwd")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	frag, err := restartICE(ctx, s.pc(), f)
	if err != nil {
		srv.log.Warn("whip: ICE restart", "stream", s.streamID(), "err", err)
		writeErr(w, err)
		return
	}
	st.gen++
	srv.log.Info("whip: ICE restarted", "stream", s.streamID(), "kind", s.kind(), "generation", st.gen)
	h := w.Header()
	h.Set("Content-Type", "application/trickle-ice-sdpfrag")
	h.Set("ETag", st.etag(s.resource()))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, frag)
}

// trickle adds a fragment's candidates to the session (RFC 9725 §4.3.1).
func (srv *Server) trickle(w http.ResponseWriter, s resource, f iceFrag) {
	for _, c := range f.cands {
		if err := s.pc().AddICECandidate(c); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad-candidate", "An ICE candidate was refused", err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// restartICE restarts ICE on pc, the answerer: the remote offer is applied
// again with the fragment's credentials, which makes pion restart its ICE
// agent with new local credentials and gather again; the answer's credentials
// and candidates are the fragment returned. DTLS and the media tracks carry on.
func restartICE(ctx context.Context, pc *webrtc.PeerConnection, f iceFrag) (string, error) {
	rd := pc.RemoteDescription()
	if rd == nil || pc.SignalingState() != webrtc.SignalingStateStable {
		return "", &session.Error{Status: http.StatusConflict, Kind: "session-not-stable", Title: "The session cannot restart ICE now",
			Detail: "its offer/answer is in state " + pc.SignalingState().String()}
	}
	offer, err := restartedOffer(rd.SDP, f)
	if err != nil {
		return "", badSDP("The session cannot be restarted", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", badSDP("The ICE restart cannot be applied", err)
	}
	answer, err := completeAnswer(ctx, pc)
	if err != nil {
		return "", err
	}
	for _, c := range f.cands {
		if err := pc.AddICECandidate(c); err != nil {
			return "", badSDP("An ICE candidate was refused", err)
		}
	}
	return localFrag(answer)
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
