package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq"
	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
)

// Auth is how a gateway decides who may publish and play once `auth` is
// configured: WHIP, WHEP and MoQ requests need a bearer token that grants
// the action on the stream.
type Auth struct {
	// Verifier checks the tokens. Required.
	Verifier *auth.Verifier
}

// WithAuth turns authentication on: from then on every WHIP and WHEP request
// (POST, PATCH, DELETE) and every MoQ publish and subscribe needs a token.
func WithAuth(a Auth) Option { return func(g *Gateway) { g.auth = newAuthorizer(a) } }

// authorizer holds the gateway's auth decisions and the limits its tokens
// set. It is nil on a gateway without auth.
type authorizer struct {
	cfg Auth

	mu     sync.Mutex
	limits map[string]*streamLimits // by stream: what its publisher's token allows
}

// streamLimits are a published stream's limits, from its publisher's token.
type streamLimits struct {
	auth.Limits
	since   time.Time
	strikes int // consecutive bitrate samples over the limit
}

func newAuthorizer(a Auth) *authorizer {
	return &authorizer{cfg: a, limits: map[string]*streamLimits{}}
}

// authRequest is a request to authorize, whatever its protocol.
type authRequest struct {
	kind, stream string
	token        string
	tokenErr     error // from reading the token (missing, malformed)
	opens        bool  // a new session (POST, PUBLISH, SUBSCRIBE), not a PATCH or DELETE
}

// check verifies the request's token and grant and, for a new session, the
// limits; it returns nil or an *auth.Error.
func (g *Gateway) check(_ context.Context, req authRequest) error {
	a := g.auth
	if req.tokenErr != nil {
		return req.tokenErr
	}
	action := auth.Play
	if req.kind == wire.KindPublish {
		action = auth.Publish
	}
	c, err := a.cfg.Verifier.Authorize(req.token, action, req.stream)
	if err != nil || !req.opens {
		return err
	}
	if action == auth.Publish {
		a.setLimits(req.stream, c.Limits)
		return nil
	}
	return g.checkViewers(req.stream, c.Limits.MaxViewers)
}

// checkViewers refuses a new viewer of stream when it would pass its own
// token's viewer limit or its publisher's, as this gateway counts viewers.
func (g *Gateway) checkViewers(stream string, own int) error {
	limit := own
	if l := g.auth.limitsOf(stream); l.MaxViewers > 0 && (limit == 0 || l.MaxViewers < limit) {
		limit = l.MaxViewers
	}
	if limit == 0 {
		return nil
	}
	if v := g.core.LocalStreams()[stream]; v != nil && v.Viewers >= limit {
		return &auth.Error{Status: http.StatusForbidden, Check: "viewer-limit", Detail: "the stream has as many viewers as its token allows"}
	}
	return nil
}

func (a *authorizer) setLimits(stream string, l auth.Limits) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l == (auth.Limits{}) {
		delete(a.limits, stream)
		return
	}
	a.limits[stream] = &streamLimits{Limits: l, since: time.Now()}
}

func (a *authorizer) limitsOf(stream string) auth.Limits {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.limits[stream]; l != nil {
		return l.Limits
	}
	return auth.Limits{}
}

// authorizeHTTP is whip.Config.Authorize: the token of the Authorization
// header (RFC 9725 §4.5), checked for kind on stream.
func (g *Gateway) authorizeHTTP(w http.ResponseWriter, r *http.Request, kind, stream string) bool {
	tok, terr := auth.FromRequest(r)
	err := g.check(r.Context(), authRequest{kind: kind, stream: stream, token: tok, tokenErr: terr, opens: r.Method == http.MethodPost})
	if err != nil {
		writeAuthError(w, err)
		return false
	}
	return true
}

// authorizeMoQ is moq.Config.Authorize.
func (g *Gateway) authorizeMoQ(ctx context.Context, m moq.Auth) error {
	req := authRequest{kind: m.Kind, stream: m.Stream, token: string(m.Token), opens: true}
	if len(m.Token) == 0 {
		req.tokenErr = auth.ErrMissing
	}
	return g.check(ctx, req)
}

// writeAuthError answers a refused request: 401 with a Bearer challenge
// (RFC 6750 §3) or 403, as a problem naming the check that failed.
func writeAuthError(w http.ResponseWriter, err error) {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		problem.Write(w, http.StatusServiceUnavailable, "auth-failed", "The request could not be authorized", err.Error())
		return
	}
	title := "The request is not allowed"
	switch {
	case ae.Status == http.StatusUnauthorized && errors.Is(ae, auth.ErrMissing):
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		title = "A bearer token is required"
	case ae.Status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
		title = "The bearer token was refused"
	case ae.Status == http.StatusForbidden:
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="insufficient_scope"`)
	}
	detail := ae.Detail
	if detail == "" {
		detail = ae.Check
	}
	problem.Write(w, ae.Status, ae.Check, title, detail)
}

// bitrateStrikes is how many consecutive one-second samples a publisher may
// spend over its token's bitrate before it is ended: a keyframe burst is not
// a violation.
const bitrateStrikes = 3

// enforceLimits ends WHIP publishers that run over their token's bitrate and
// forgets the limits of streams no longer published here, once a second
// until done is closed.
func (g *Gateway) enforceLimits(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		g.enforceOnce(time.Now())
	}
}

func (g *Gateway) enforceOnce(now time.Time) {
	a := g.auth
	a.mu.Lock()
	if len(a.limits) == 0 {
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	views := g.core.LocalStreams()
	var over []string
	a.mu.Lock()
	for stream, l := range a.limits {
		v := views[stream]
		switch {
		case v == nil || v.Publisher == nil:
			// Not (or not yet) published here: a publication takes a few
			// seconds to be placed.
			if now.Sub(l.since) > 30*time.Second {
				delete(a.limits, stream)
			}
		case l.MaxBitrate > 0 && v.Bitrate > float64(l.MaxBitrate):
			if l.strikes++; l.strikes >= bitrateStrikes {
				over = append(over, stream)
				delete(a.limits, stream)
			}
		default:
			l.strikes = 0
		}
	}
	a.mu.Unlock()
	for _, stream := range over {
		if n := g.webrtc.EndPublisher(stream, "over the token's bitrate limit"); n > 0 {
			g.log.Warn("auth: publisher ended over its token's bitrate limit", "stream", stream)
		}
	}
}
