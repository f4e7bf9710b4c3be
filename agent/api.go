package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// api is the agent API (wire.Path*), served over mutual TLS; proxied calls
// come on the same port as tunnels (Run: wire.ALPNTunnel), not through it. Every handler goes
// through the Manager's methods; answers are written by internal/problem.
func (a *Agent) api() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathSessions, a.handleOpen)
	mux.HandleFunc("DELETE "+wire.PathSession, a.handleClose)
	mux.HandleFunc("GET "+wire.PathStreams, a.handleStreams)
	mux.HandleFunc("GET "+wire.PathStream, a.handleStream)
	mux.HandleFunc("GET "+wire.PathStatus, func(w http.ResponseWriter, _ *http.Request) { problem.WriteJSON(w, http.StatusOK, a.Status()) })
	mux.HandleFunc("POST "+wire.PathNodes, a.handleStartNode)
	mux.HandleFunc("GET "+wire.PathNode, a.handleNode)
	mux.HandleFunc("DELETE "+wire.PathNode, a.handleStopNode)
	mux.HandleFunc("GET "+wire.PathNodeLogs, a.handleLogs)
	mux.HandleFunc("GET "+wire.PathEvents, a.handleEvents)
	mux.HandleFunc("GET "+wire.PathProxyStream, a.svc.HandleGetStream)
	mux.HandleFunc("PUT "+wire.PathProxyStream, a.svc.HandleHoldStream)
	return mux
}

// problemFor maps the manager's errors to a status and a problem type.
func problemFor(err error) (status int, kind string) {
	switch {
	case errors.Is(err, ErrNotLive):
		return http.StatusNotFound, "stream-not-live"
	case errors.Is(err, ErrNoSuchSess):
		return http.StatusNotFound, "no-session"
	case errors.Is(err, ErrNoSuchNode):
		return http.StatusNotFound, "no-node"
	case errors.Is(err, ErrBusy):
		return http.StatusConflict, "stream-busy"
	case errors.Is(err, ErrQueueFull):
		return http.StatusServiceUnavailable, "queue-full"
	case errors.Is(err, ErrQueueTime):
		return http.StatusServiceUnavailable, "queue-timeout"
	case errors.Is(err, ErrPoolFailed):
		return http.StatusServiceUnavailable, "pool-failed"
	case errors.Is(err, ErrDraining):
		return http.StatusServiceUnavailable, "draining"
	case errors.Is(err, ErrNoPurpose):
		return http.StatusBadRequest, "no-purpose"
	case errors.Is(err, ErrNodeTimeout):
		return http.StatusGatewayTimeout, "node-timeout"
	}
	return http.StatusInternalServerError, "internal"
}

// writeErr answers with the problem for err.
func writeErr(w http.ResponseWriter, err error) {
	status, kind := problemFor(err)
	problem.Write(w, status, kind, http.StatusText(status), err.Error())
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-json", "The request body is not valid", err.Error())
		return false
	}
	return true
}

func (a *Agent) handleOpen(w http.ResponseWriter, r *http.Request) {
	var req wire.OpenRequest
	if !decode(w, r, &req) {
		return
	}
	if err := streamid.Validate(req.Stream); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return
	}
	resp, err := a.mgr.Open(r.Context(), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, resp)
}

func (a *Agent) handleClose(w http.ResponseWriter, r *http.Request) {
	if err := a.mgr.CloseSession(r.PathValue("id")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleStreams(w http.ResponseWriter, _ *http.Request) {
	problem.WriteJSON(w, http.StatusOK, a.mgr.streamInfos())
}

func (a *Agent) handleStream(w http.ResponseWriter, r *http.Request) {
	si, err := a.mgr.stream(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, si)
}

func (a *Agent) handleStartNode(w http.ResponseWriter, r *http.Request) {
	var req wire.NodeStartRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Purpose == "" {
		req.Purpose = "relay"
	}
	n, err := a.mgr.StartNode(req.Purpose)
	if err != nil {
		writeErr(w, err)
		return
	}
	problem.WriteJSON(w, http.StatusCreated, n)
}

func (a *Agent) handleNode(w http.ResponseWriter, r *http.Request) {
	n, err := a.mgr.QueryNode(r.PathValue("node"))
	if err != nil {
		writeErr(w, err)
		return
	}
	problem.WriteJSON(w, http.StatusOK, n)
}

func (a *Agent) handleStopNode(w http.ResponseWriter, r *http.Request) {
	if err := a.mgr.RecycleNode(r.PathValue("node")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleLogs serves a node's output; with follow=1 it streams new lines until the
// node exits or the client goes away.
func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	past, more, err := a.mgr.nodeLogs(r.Context(), r.PathValue("node"), r.URL.Query().Get("follow") == "1")
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	for _, l := range past {
		_, _ = io.WriteString(w, l+"\n")
	}
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	if more == nil {
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case l, ok := <-more:
			if !ok {
				return
			}
			_, _ = io.WriteString(w, l+"\n")
		case <-keep.C:
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// handleEvents streams the node manager's events, one JSON object per line, with
// a keepalive every 10 s, until the client goes away or the agent stops.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	events, stop := a.mgr.Watch()
	defer stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	write := func(ev wire.Event) bool {
		if enc.Encode(ev) != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	if !write(wire.Event{T: wire.EventKeepalive}) {
		return
	}
	keep := time.NewTicker(10 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-events:
			if !ok || !write(ev) {
				return
			}
		case <-keep.C:
			if !write(wire.Event{T: wire.EventKeepalive}) {
				return
			}
		}
	}
}
