package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq"
	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// clientHost is the host of a remote address, as the throttle policy sees it.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Auth is how a gateway decides who may publish and play once `auth` is
// configured: WHIP, WHEP and MoQ requests need a bearer token that grants
// the action on the stream, and the auth policy may decide too.
type Auth struct {
	// Verifier checks the tokens. Nil only with Mode auth.PolicyInstead: then
	// no token verifies and the policy alone decides.
	Verifier *auth.Verifier
	// Policy is the auth policy slot. Nil: only the JWT check decides.
	Policy AuthPolicy
	// Mode is when Policy decides: auth.PolicyAfter (once the JWT check has
	// passed) or auth.PolicyInstead (in place of it). Default: after.
	Mode string
	// Headers are the request headers the auth policy sees. Default
	// [User-Agent, Origin].
	Headers []string
}

// AuthPolicy allows or denies a request that the gateway's JWT check has
// verified (or, in place of it, that carries whatever token it has). It is
// called concurrently. The policy host (package wasm) is the AuthPolicy of a
// running sluice.
type AuthPolicy interface {
	Authorize(ctx context.Context, in *abi.AuthInput) (abi.AuthOutput, error)
}

// WithAuth turns authentication on: from then on every WHIP and WHEP request
// (POST, PATCH, DELETE) and every MoQ publish and subscribe needs a token (or
// the auth policy's consent).
func WithAuth(a Auth) Option {
	if a.Mode == "" {
		a.Mode = auth.PolicyAfter
	}
	if a.Headers == nil {
		a.Headers = []string{"User-Agent", "Origin"}
	}
	return func(g *Gateway) { g.auth = newAuthorizer(a) }
}

// authorizer holds the gateway's auth decisions and the limits its tokens
// set. It is nil on a gateway without auth.
type authorizer struct {
	cfg Auth // as the gateway started; the keys and headers in it are replaced by live's
	// live are the token keys and policy headers of the last config reload.
	live atomic.Pointer[authLive]

	mu     sync.Mutex
	limits map[string]*streamLimits // by stream: what its publisher's token allows
}

// streamLimits are what the gateway keeps of an allowed publish: its token's
// limits and, when the auth policy allowed it, the publish-end notice to send.
type streamLimits struct {
	auth.Limits
	since   time.Time
	live    bool // seen published here
	strikes int  // consecutive bitrate samples over the limit

	end    *authRequest // nil: the policy is not told
	claims *auth.Claims
}

// authLive is what a config reload may change in a running authorizer.
type authLive struct {
	verifier *auth.Verifier
	headers  []string
}

func newAuthorizer(a Auth) *authorizer {
	z := &authorizer{cfg: a, limits: map[string]*streamLimits{}}
	z.live.Store(&authLive{verifier: a.Verifier, headers: a.Headers})
	return z
}

// authRequest is a request to authorize, whatever its protocol.
type authRequest struct {
	kind, stream   string
	path, protocol string
	client         string
	headers        abi.Pairs
	token          string
	tokenErr       error // from reading the token (missing, malformed)
	opens          bool  // a new session (POST, PUBLISH, SUBSCRIBE), not a PATCH or DELETE
}

// errNoKeys is the JWT check's verdict when the gateway has no keys (the
// auth policy decides instead).
var errNoKeys = &auth.Error{Status: http.StatusUnauthorized, Check: "off", Detail: "the gateway verifies no tokens"}

// check runs the JWT check and the auth policy, as configured, and, for a new
// session, the limits; it returns nil or an *auth.Error.
func (g *Gateway) check(ctx context.Context, req authRequest) error {
	a := g.auth
	action := auth.Play
	switch req.kind {
	case wire.KindPublish:
		action = auth.Publish
	case wire.KindProxy:
		action = auth.Proxy
	}
	c, verr := a.verify(req, action)
	usePolicy := a.cfg.Policy != nil
	instead := usePolicy && a.cfg.Mode == auth.PolicyInstead
	switch {
	case verr != nil && !instead:
		return verr
	case !req.opens:
		// A PATCH or DELETE of a session: the JWT check alone decides, or,
		// when the policy decides instead, the session's unguessable
		// resource URL, from an answer the policy allowed, is the
		// capability. The policy sees each session once, as a quota needs.
		return nil
	case usePolicy:
		if err := g.askPolicy(ctx, req, c, verr); err != nil {
			return err
		}
	}
	var limits auth.Limits
	if c != nil {
		limits = c.Limits
	}
	switch action {
	case auth.Publish:
		a.published(req, c, usePolicy)
		return nil
	case auth.Proxy:
		return nil // a call is no session: no viewer limit
	}
	return g.checkViewers(req.stream, limits.MaxViewers)
}

// verify is the JWT check: the claims of a token that verifies (even when it
// does not grant the action), and the check's refusal.
func (a *authorizer) verify(req authRequest, action auth.Action) (*auth.Claims, error) {
	switch {
	case req.tokenErr != nil:
		return nil, req.tokenErr
	}
	v := a.live.Load().verifier
	if v == nil {
		return nil, errNoKeys
	}
	return v.Authorize(req.token, action, req.stream)
}

// askPolicy asks the auth policy about req, with the JWT check's claims and
// verdict, and turns a denial into an *auth.Error.
func (g *Gateway) askPolicy(ctx context.Context, req authRequest, c *auth.Claims, verr error) error {
	in := policyInput(req, c, verr)
	out, err := g.auth.cfg.Policy.Authorize(ctx, in)
	if err != nil {
		return fmt.Errorf("auth policy: %w", err)
	}
	if out.Allow {
		return nil
	}
	status := out.Status
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	return &auth.Error{Status: status, Check: "policy", Detail: out.Reason}
}

// policyInput is the auth policy's input for req.
func policyInput(req authRequest, c *auth.Claims, verr error) *abi.AuthInput {
	in := &abi.AuthInput{Kind: req.kind, StreamID: req.stream, Path: req.path, Protocol: req.protocol, Client: req.client,
		Headers: req.headers, NowNanos: time.Now().UnixNano()}
	var ae *auth.Error
	if errors.As(verr, &ae) {
		in.Check = ae.Check
	}
	if c != nil {
		tc := &abi.TokenClaims{Subject: c.Subject, Tenant: c.Tenant, Role: c.Role, Issuer: c.Issuer, Granted: verr == nil,
			MaxViewers: c.Limits.MaxViewers, MaxBitrate: c.Limits.MaxBitrate}
		if c.ExpiresAt != nil {
			tc.ExpiresNanos = c.ExpiresAt.UnixNano()
		}
		in.Token = tc
	}
	return in
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

// published records an allowed publish of req.stream: the limits of its
// token, and, when the auth policy allowed it, what to tell the policy when
// it ends. A publish that replaces one still recorded ends that one first, so
// a policy counting publishes never counts one twice.
func (a *authorizer) published(req authRequest, c *auth.Claims, tellEnd bool) {
	var l auth.Limits
	if c != nil {
		l = c.Limits
	}
	e := &streamLimits{Limits: l, since: time.Now()}
	if tellEnd {
		end := *req.asEnd()
		e.end = &end
		e.claims = c
	}
	a.mu.Lock()
	old := a.limits[req.stream]
	if l == (auth.Limits{}) && e.end == nil {
		delete(a.limits, req.stream)
	} else {
		a.limits[req.stream] = e
	}
	a.mu.Unlock()
	if old != nil && old.end != nil {
		a.tellEnded(old)
	}
}

// asEnd is the publish-end notice of an allowed publish.
func (req authRequest) asEnd() *authRequest {
	end := req
	end.kind, end.token, end.tokenErr = abi.KindPublishEnd, "", nil
	return &end
}

// tellEnded tells the auth policy that a publish it allowed is over. Its
// answer is ignored.
func (a *authorizer) tellEnded(e *streamLimits) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = a.cfg.Policy.Authorize(ctx, policyInput(*e.end, e.claims, nil))
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
	proto := "whep"
	switch kind {
	case wire.KindPublish:
		proto = "whip"
	case wire.KindProxy:
		proto = "http"
	}
	var hs []string
	for _, name := range g.auth.live.Load().headers {
		if v := r.Header.Get(name); v != "" {
			hs = append(hs, http.CanonicalHeaderKey(name), v)
		}
	}
	err := g.check(r.Context(), authRequest{kind: kind, stream: stream, path: r.URL.Path, protocol: proto, client: clientHost(r.RemoteAddr),
		headers: abi.MakePairs(hs...), token: tok, tokenErr: terr, opens: r.Method == http.MethodPost || kind == wire.KindProxy})
	if err != nil {
		writeAuthError(w, err)
		return false
	}
	return true
}

// authorizeMoQ is moq.Config.Authorize.
func (g *Gateway) authorizeMoQ(ctx context.Context, m moq.Auth) error {
	req := authRequest{kind: m.Kind, stream: m.Stream, path: m.Path, protocol: "moq", client: m.Client, token: string(m.Token), opens: true}
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

// placementGrace is how long an allowed publish may go unseen before it is
// taken as over: longer than a publish request's placement deadline (15 s).
const placementGrace = 16 * time.Second

// bitrateStrikes is how many consecutive one-second samples a publisher may
// spend over its token's bitrate before it is ended: a keyframe burst is not
// a violation.
const bitrateStrikes = 3

// enforceLimits ends publishers that run over their token's or their stream
// rule's bitrate and forgets the limits of streams no longer published here,
// once a second until done is closed.
func (g *Gateway) enforceLimits(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	strikes := map[string]int{}
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if g.auth != nil {
			g.enforceOnce(time.Now())
		}
		g.enforceRules(strikes)
	}
}

// enforceRules ends the publishers that have sent more than their stream
// rule's maxBitrate for bitrateStrikes samples running; strikes counts them
// by stream.
func (g *Gateway) enforceRules(strikes map[string]int) {
	var over []string
	for stream, v := range g.core.LocalStreams() {
		r, ok := g.core.Rule(stream)
		if !ok || r.MaxBitrate <= 0 || v.Publisher == nil || v.Bitrate <= float64(r.MaxBitrate) {
			delete(strikes, stream)
			continue
		}
		if strikes[stream]++; strikes[stream] >= bitrateStrikes {
			delete(strikes, stream)
			over = append(over, stream)
		}
	}
	for stream := range strikes {
		if _, ok := g.core.Rule(stream); !ok {
			delete(strikes, stream)
		}
	}
	g.endPublishers(over, "over the stream's bitrate limit (streams[].limits.maxBitrate)")
}

// endPublishers ends the WHIP and MoQ publishers of streams, saying why.
func (g *Gateway) endPublishers(streams []string, why string) {
	for _, stream := range streams {
		n := g.webrtc.EndPublisher(stream, why)
		if g.moq != nil {
			n += g.moq.EndPublisher(stream, why, moqt.ReqUnauthorized)
		}
		if n > 0 {
			g.log.Warn("gateway: publisher ended", "stream", stream, "why", why)
		}
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
	var ended []*streamLimits
	a.mu.Lock()
	for stream, l := range a.limits {
		v := views[stream]
		switch {
		case v == nil || v.Publisher == nil:
			// Not published here: over, or not placed yet (a WHIP or MoQ
			// publish is placed within its 15 s request deadline).
			if l.live || now.Sub(l.since) > placementGrace {
				delete(a.limits, stream)
				if l.end != nil {
					ended = append(ended, l)
				}
			}
		case l.MaxBitrate > 0 && v.Bitrate > float64(l.MaxBitrate):
			l.live = true
			if l.strikes++; l.strikes >= bitrateStrikes {
				over = append(over, stream)
				delete(a.limits, stream)
			}
		default:
			l.live, l.strikes = true, 0
		}
	}
	a.mu.Unlock()
	for _, l := range ended {
		a.tellEnded(l)
	}
	g.endPublishers(over, "over the token's bitrate limit")
}
