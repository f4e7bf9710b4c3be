package gateway

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/problem"
)

// Live is the part of a running gateway's configuration that a reload
// changes in place. The rest of Config is fixed for the gateway's life.
type Live struct {
	// Webhooks replace the event endpoints: an unchanged one keeps its queue.
	Webhooks []Webhook
	// Streams replace the stream rules; preloads follow within a second.
	Streams []StreamRule
	// Verifier, when not nil, replaces the token keys of WHIP, WHEP, MoQ and
	// proxied calls on a gateway started with auth (WithAuth).
	Verifier *auth.Verifier
	// AuthHeaders, when not nil, replace the headers the auth policy sees.
	AuthHeaders []string
	// APIToken, when not nil, replaces the static /v1 token; it may not be
	// emptied live (a gateway beyond loopback must keep one).
	APIToken *string
	// CORSOrigins, when not nil, replace the origins that may call from a
	// browser; empty means every origin ("*"), as at start.
	CORSOrigins []string
}

// Apply puts l into effect, or changes nothing and says why by field.
// Sessions in flight keep going: a new rule, key or endpoint applies from
// the next request or event on.
func (g *Gateway) Apply(l Live) error {
	for i, h := range l.Webhooks {
		if err := h.Check(); err != nil {
			return fmt.Errorf("webhooks[%d].%w", i, err)
		}
	}
	if (l.Verifier != nil || l.AuthHeaders != nil) && g.auth == nil {
		return fmt.Errorf("auth: the gateway started without auth; turning it on takes a restart")
	}
	if l.APIToken != nil && *l.APIToken == "" && g.api.Load().token != "" {
		return fmt.Errorf("gateway.apiToken: removing the API token takes a restart")
	}
	g.hooks.Update(l.Webhooks)
	if l.APIToken != nil || l.CORSOrigins != nil {
		cur := *g.api.Load()
		if l.APIToken != nil {
			cur.token = *l.APIToken
		}
		if l.CORSOrigins != nil {
			cur.origins = Config{CORSOrigins: l.CORSOrigins}.withDefaults().CORSOrigins
		}
		g.api.Store(&cur)
	}
	g.core.SetStreams(l.Streams)
	if g.auth != nil {
		cur := *g.auth.live.Load()
		if l.Verifier != nil {
			cur.verifier = l.Verifier
		}
		if l.AuthHeaders != nil {
			cur.headers = l.AuthHeaders
		}
		g.auth.live.Store(&cur)
	}
	return nil
}

// ReloadReport is the answer to a config reload: the changed settings, by
// their full path in the file (gateway.listen, webhooks[0].url), that are
// in effect now and those that take effect at the next start.
type ReloadReport struct {
	Applied []string `json:"applied"`
	Restart []string `json:"restart"`
}

// Reloader re-reads the configuration file and applies what it can (the
// command's reload: it knows the file). An error means the file was refused
// and nothing changed; it names the field.
type Reloader func(ctx context.Context) (ReloadReport, error)

// WithReloader serves POST /v1/config/reload with r. Without it the route
// answers 409: there is no file to reload.
func WithReloader(r Reloader) Option { return func(g *Gateway) { g.reloader = r } }

// handleReload is POST /v1/config/reload (guarded like every /v1 call: the
// API token, or a JWT with the admin role, once either is configured).
func (g *Gateway) handleReload(w http.ResponseWriter, r *http.Request) {
	if g.reloader == nil {
		problem.Write(w, http.StatusConflict, "no-config", "There is no configuration file to reload",
			"the gateway was started without --config")
		return
	}
	rep, err := g.reloader(r.Context())
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "config-invalid", "The configuration was refused; the running one stays", err.Error())
		return
	}
	if rep.Applied == nil {
		rep.Applied = []string{}
	}
	if rep.Restart == nil {
		rep.Restart = []string{}
	}
	problem.WriteJSON(w, http.StatusOK, rep)
}
