package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/auth"
)

// runToken prints a token signed with the configured key (auth.jwt.secret or
// auth.jwt.signingKey) that grants actions on streams, or an API role.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file with an auth.jwt section (required)")
	streams := fs.String("stream", "", "comma list of stream ids or patterns (cam-*) the token grants")
	allow := fs.String("allow", "publish", "comma list of actions on those streams: publish, play")
	role := fs.String("role", "", "API role: admin or read (for /v1 and the dashboard's stream list)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	sub := fs.String("sub", "", "subject: whom the token is for")
	tenant := fs.String("tenant", "", "tenant, for auth policies (quotas)")
	viewers := fs.Int("max-viewers", 0, "most viewers the stream may have (0: no limit)")
	bitrate := fs.Int64("max-bitrate", 0, "most bits per second a publisher may send (0: no limit)")
	kid := fs.String("kid", "", "key id to put in the token's header")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "sluice token:", err); return 2 }
	if *cfgPath == "" {
		return fail(fmt.Errorf("give the gateway's config with --config"))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(err)
	}
	c, err := tokenClaims(*streams, *allow, *role, *ttl, cfg.Auth.JWT)
	if err != nil {
		return fail(err)
	}
	c.Subject, c.Tenant, c.Limits = *sub, *tenant, auth.Limits{MaxViewers: *viewers, MaxBitrate: *bitrate}
	s, err := auth.NewSigner(cfg.Auth.JWT, *kid)
	if err != nil {
		return fail(err)
	}
	tok, err := s.Sign(c)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// tokenClaims are the claims of `sluice token`'s flags.
func tokenClaims(streams, allow, role string, ttl time.Duration, j auth.JWT) (*auth.Claims, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("--ttl %s: must be positive", ttl)
	}
	now := time.Now()
	c := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), Issuer: j.Issuer,
	}, Role: role}
	if j.Audience != "" {
		c.Audience = jwt.ClaimStrings{j.Audience}
	}
	switch role {
	case "", auth.RoleAdmin, auth.RoleRead:
	default:
		return nil, fmt.Errorf("--role %q: want admin or read", role)
	}
	if streams == "" {
		if role == "" {
			return nil, fmt.Errorf("give --stream (and --allow) or --role")
		}
		return c, nil
	}
	g := auth.Grant{}
	for _, p := range strings.Split(streams, ",") {
		if err := auth.ValidPattern(p); err != nil {
			return nil, fmt.Errorf("--stream: %w", err)
		}
		g.Streams = append(g.Streams, p)
	}
	for _, a := range strings.Split(allow, ",") {
		act, err := auth.ParseAction(a)
		if err != nil {
			return nil, fmt.Errorf("--allow: %w", err)
		}
		g.Allow = append(g.Allow, act)
	}
	c.Grants = []auth.Grant{g}
	return c, nil
}

// authOptions are the gateway options of the config's auth section: none
// when it is off. pol is the auth policy slot, consulted as auth.policy says.
func authOptions(cfg *fileConfig, log logger, pol gateway.AuthPolicy) ([]gateway.Option, error) {
	a := cfg.Auth
	if !a.Enabled() {
		return nil, nil
	}
	ga := gateway.Auth{Mode: a.Policy, Headers: a.Headers}
	if a.JWT.Configured() {
		v, err := auth.NewVerifier(a.JWT, log.With("component", "auth"))
		if err != nil {
			return nil, err
		}
		ga.Verifier = v
	}
	if a.PolicyOn() {
		ga.Policy = pol
	} else {
		ga.Mode = ""
	}
	return []gateway.Option{gateway.WithAuth(ga)}, nil
}
