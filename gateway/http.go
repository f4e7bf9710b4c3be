package gateway

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway/internal/proxy"
	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/promexpo"
)

func (g *Gateway) routes(set *metrics.Set) http.Handler {
	mux := http.NewServeMux()
	g.webrtc.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		problem.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", g.handleReady)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", promexpo.ContentType)
		promexpo.Write(w, set)
	})
	mux.HandleFunc("GET /v1/cluster", g.handleCluster)
	mux.HandleFunc("POST /v1/cluster/gossip-key", g.handleRotateGossipKey)
	mux.HandleFunc("GET /v1/scale", g.handleScale)
	mux.HandleFunc("POST /v1/config/reload", g.handleReload)
	mux.HandleFunc("GET /v1/streams", g.handleStreams)
	mux.HandleFunc("GET /v1/streams/{stream}", g.handleStream)
	mux.HandleFunc("GET /v1/proxy", func(w http.ResponseWriter, _ *http.Request) {
		v := proxy.View{Routes: []proxy.RouteView{}, Limited: []string{}}
		if g.proxy != nil {
			v = g.proxy.View()
		}
		problem.WriteJSON(w, http.StatusOK, v)
	})
	g.nodesRoutes(mux)
	mux.Handle("GET /", dashboard())
	for _, r := range g.extras {
		mux.Handle(r.pattern, r.h)
	}
	var h http.Handler = mux
	if g.proxy != nil {
		// Each route's histogram is there from the start, so a dashboard
		// shows a route before its first request.
		took := map[string]*metrics.PrometheusHistogram{}
		for _, rt := range g.proxy.View().Routes {
			took[rt.Prefix] = proxy.RequestDuration(set, rt.Prefix)
		}
		// Proxied prefixes come first: the dashboard takes every other GET.
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rt := g.proxy.Match(r.URL.Path); rt != nil {
				start := time.Now()
				g.proxy.ServeHTTP(w, r)
				if hist := took[rt.Prefix]; hist != nil {
					hist.UpdateDuration(start)
				}
				return
			}
			if g.proxy.Strays(r) {
				g.proxy.ServeHTTP(w, r) // a stray gets its 404 as a problem
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	return g.cors(g.authAPI(h))
}

// cors lets pages from the configured origins use WHIP, WHEP and the API, and
// exposes the headers a WHIP client must read.
func (g *Gateway) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origins := g.api.Load().origins
		if origin := r.Header.Get("Origin"); origin != "" && originAllowed(origins, origin) {
			h := w.Header()
			if len(origins) == 1 && origins[0] == "*" {
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

// authAPI guards /v1/ once an API token or auth is configured: the static
// API token may do everything, a JWT with the admin role too, one with the
// read role only GET and HEAD.
func (g *Gateway) authAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") || r.Method == http.MethodOptions ||
			g.auth == nil && g.api.Load().token == "" {
			next.ServeHTTP(w, r)
			return
		}
		if err := g.checkAPI(r); err != nil {
			writeAuthError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkAPI reports why r may not use the API, or nil.
func (g *Gateway) checkAPI(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if token := g.api.Load().token; token != "" && subtle.ConstantTimeCompare([]byte(h), []byte("Bearer "+token)) == 1 {
		return nil
	}
	tok, err := auth.BearerToken(h)
	if err != nil {
		return err
	}
	var v *auth.Verifier
	if g.auth != nil {
		v = g.auth.live.Load().verifier // the keys of the last reload
	}
	if v == nil {
		return &auth.Error{Status: http.StatusUnauthorized, Check: "token-invalid", Detail: "send Authorization: Bearer <gateway.apiToken>"}
	}
	c, err := v.Verify(tok)
	if err != nil {
		return err
	}
	switch {
	case c.Role == auth.RoleAdmin:
		return nil
	case c.Role == auth.RoleRead && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return nil
	case c.Role == auth.RoleRead:
		return &auth.Error{Status: http.StatusForbidden, Check: "read-only", Detail: "the token's read role allows only GET"}
	}
	return &auth.Error{Status: http.StatusForbidden, Check: "no-role", Detail: "the token has no API role (admin or read)"}
}

func originAllowed(origins []string, origin string) bool {
	for _, o := range origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func (g *Gateway) handleReady(w http.ResponseWriter, _ *http.Request) {
	n := g.core.ServingAgents()
	if n == 0 {
		problem.Write(w, http.StatusServiceUnavailable, "not-ready", "No agent is serving", "the gateway sees no serving agent in the cluster")
		return
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "agents": n})
}

// apiAccess is what guards the API and which pages may call it, as the
// start or the last config reload set them.
type apiAccess struct {
	token   string
	origins []string
}
