package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// api is the agent API (wire.Path*), served over mutual TLS.
func (a *Agent) api() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathSessions, a.handleOpen)
	mux.HandleFunc("DELETE "+wire.PathSession, a.handleClose)
	mux.HandleFunc("GET "+wire.PathStreams, a.handleStreams)
	mux.HandleFunc("GET "+wire.PathStream, a.handleStream)
	mux.HandleFunc("GET "+wire.PathStatus, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.Status()) })
	mux.HandleFunc("POST "+wire.PathNodes, a.handleStartNode)
	mux.HandleFunc("GET "+wire.PathNode, a.handleNode)
	mux.HandleFunc("DELETE "+wire.PathNode, a.handleStopNode)
	mux.HandleFunc("GET "+wire.PathNodeLogs, a.handleLogs)
	mux.HandleFunc("GET "+wire.PathEvents, a.handleEvents)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr maps the manager's errors to problems.
func writeErr(w http.ResponseWriter, err error) {
	status, kind := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, ErrNotLive):
		status, kind = http.StatusNotFound, "stream-not-live"
	case errors.Is(err, ErrNoSuchSess):
		status, kind = http.StatusNotFound, "no-session"
	case errors.Is(err, ErrNoSuchNode):
		status, kind = http.StatusNotFound, "no-node"
	case errors.Is(err, ErrBusy):
		status, kind = http.StatusConflict, "stream-busy"
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrQueueTime):
		status, kind = http.StatusServiceUnavailable, "queue"
	case errors.Is(err, ErrPoolFailed):
		status, kind = http.StatusServiceUnavailable, "pool-failed"
	case errors.Is(err, ErrDraining):
		status, kind = http.StatusServiceUnavailable, "draining"
	case errors.Is(err, ErrNoPurpose):
		status, kind = http.StatusBadRequest, "no-purpose"
	case errors.Is(err, ErrNodeTimeout):
		status, kind = http.StatusGatewayTimeout, "node-timeout"
	}
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
	writeJSON(w, http.StatusOK, resp)
}

func (a *Agent) handleClose(w http.ResponseWriter, r *http.Request) {
	if err := a.mgr.Close(r.PathValue("id")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *Manager) streamInfos() []wire.StreamInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]wire.StreamInfo, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, m.streamInfoLocked(s))
	}
	slices.SortFunc(out, func(x, y wire.StreamInfo) int { return strings.Compare(x.Stream, y.Stream) })
	return out
}

func (m *Manager) streamInfoLocked(s *streamEntry) wire.StreamInfo {
	si := wire.StreamInfo{Stream: s.id, Agent: m.cfg.ID, Epoch: s.epoch, Since: s.since, Viewers: s.viewers}
	if s.node != nil {
		si.Node, si.Media = s.node.id, s.node.media
	}
	return si
}

func (a *Agent) handleStreams(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.mgr.streamInfos())
}

func (a *Agent) handleStream(w http.ResponseWriter, r *http.Request) {
	m := a.mgr
	m.mu.Lock()
	s := m.streams[r.PathValue("id")]
	var si wire.StreamInfo
	if s != nil {
		si = m.streamInfoLocked(s)
	}
	m.mu.Unlock()
	if s == nil {
		writeErr(w, ErrNotLive)
		return
	}
	writeJSON(w, http.StatusOK, si)
}

// StartNode starts a node of a purpose outside any stream (the node API).
func (m *Manager) StartNode(purpose string) (wire.NodeInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[purpose]
	if p == nil {
		return wire.NodeInfo{}, fmt.Errorf("%w: %q", ErrNoPurpose, purpose)
	}
	if p.failed != "" {
		return wire.NodeInfo{}, fmt.Errorf("%w (%s)", ErrPoolFailed, p.failed)
	}
	if m.poolNodesLocked(p) >= p.concurrent {
		return wire.NodeInfo{}, fmt.Errorf("%w: %d of %d %s nodes running", ErrQueueFull, m.poolNodesLocked(p), p.concurrent, purpose)
	}
	n, err := m.spawnLocked(p)
	if err != nil {
		return wire.NodeInfo{}, err
	}
	return m.nodeInfoLocked(n), nil
}

// QueryNode is queryNode: what the agent knows of one node.
func (m *Manager) QueryNode(id string) (wire.NodeInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[id]
	if n == nil {
		return wire.NodeInfo{}, ErrNoSuchNode
	}
	return m.nodeInfoLocked(n), nil
}

// RecycleNode is recycleNode: the node takes no new streams, its live streams move
// to another node (gateways re-attach), and the process is stopped.
func (m *Manager) RecycleNode(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[id]
	if n == nil {
		return ErrNoSuchNode
	}
	n.state = nodeRecycling
	m.retireLocked(n)
	return nil
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
	writeJSON(w, http.StatusCreated, n)
}

func (a *Agent) handleNode(w http.ResponseWriter, r *http.Request) {
	n, err := a.mgr.QueryNode(r.PathValue("node"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
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
	m := a.mgr
	m.mu.Lock()
	n := m.nodes[r.PathValue("node")]
	m.mu.Unlock()
	if n == nil {
		writeErr(w, ErrNoSuchNode)
		return
	}
	follow := r.URL.Query().Get("follow") == "1"
	past, more := n.logs.follow(r.Context(), follow)
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
// a keepalive every 10 s, until the client goes away.
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
