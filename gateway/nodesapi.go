package gateway

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
)

// nodesAPI translates the operator's node API (/v1/agents/{id}/nodes…, /v1/status)
// into agent API calls over mutual TLS, like the scheduler-worker pattern's HTTP
// front of worker RPCs.
func (g *Gateway) nodesRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/agents/{id}/nodes", g.proxyAgent(http.MethodPost, func(r *http.Request) string { return wire.PathNodes }))
	mux.HandleFunc("GET /v1/agents/{id}/nodes/{node}", g.proxyAgent(http.MethodGet, nodePath(wire.PathNode)))
	mux.HandleFunc("DELETE /v1/agents/{id}/nodes/{node}", g.proxyAgent(http.MethodDelete, nodePath(wire.PathNode)))
	mux.HandleFunc("GET /v1/agents/{id}/nodes/{node}/logs", g.proxyAgent(http.MethodGet, func(r *http.Request) string {
		p := nodePath(wire.PathNodeLogs)(r)
		if r.URL.Query().Get("follow") == "1" {
			p += "?follow=1"
		}
		return p
	}))
	mux.HandleFunc("GET /v1/agents/{id}/status", g.proxyAgent(http.MethodGet, func(*http.Request) string { return wire.PathStatus }))
	mux.HandleFunc("GET /v1/status", g.handleStatus)
}

func nodePath(tmpl string) func(*http.Request) string {
	return func(r *http.Request) string { return strings.Replace(tmpl, "{node}", r.PathValue("node"), 1) }
}

func (g *Gateway) agentAPI(id string) (string, bool) {
	for _, a := range g.core.AgentList() {
		if a.ID == id {
			return a.API, true
		}
	}
	return "", false
}

// proxyAgent forwards a request to the named agent and streams its answer back.
func (g *Gateway) proxyAgent(method string, path func(*http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		api, ok := g.agentAPI(r.PathValue("id"))
		if !ok {
			problem.Write(w, http.StatusNotFound, "no-agent", "No such agent", "no alive agent "+r.PathValue("id")+" in the cluster")
			return
		}
		var body io.Reader
		if method == http.MethodPost {
			body = io.LimitReader(r.Body, 64<<10)
		}
		req, err := http.NewRequestWithContext(r.Context(), method, "https://"+api+path(r), body)
		if err != nil {
			problem.Write(w, http.StatusBadRequest, "bad-request", "Bad request", err.Error())
			return
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := g.core.Agents().Streaming().Do(req) // logs may follow for as long as the client stays
		if err != nil {
			problem.Write(w, http.StatusBadGateway, "agent-unreachable", "The agent did not answer", err.Error())
			return
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "X-Content-Type-Options"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		fl, _ := w.(http.Flusher)
		buf := make([]byte, 16<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
			if err != nil {
				return
			}
		}
	}
}

// clusterStatus is GET /v1/status: every agent's process table.
type clusterStatus struct {
	Agents []wire.Status     `json:"agents"`
	Errors map[string]string `json:"errors,omitempty"` // agent id → why it did not answer
}

func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) {
	agents := g.core.AgentList()
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	out := clusterStatus{Errors: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st wire.Status
			err := g.core.Agents().Do(ctx, http.MethodGet, a.API, wire.PathStatus, nil, &st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Errors[a.ID] = err.Error()
				return
			}
			out.Agents = append(out.Agents, st)
		}()
	}
	wg.Wait()
	slices.SortFunc(out.Agents, func(x, y wire.Status) int { return strings.Compare(x.Agent, y.Agent) })
	problem.WriteJSON(w, http.StatusOK, out)
}
