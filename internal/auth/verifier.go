package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds a token: longer ones are refused before any parsing.
const MaxTokenBytes = 8 << 10

// Verifier checks tokens against the configured keys. It is safe for
// concurrent use.
type Verifier struct {
	static    []key
	jwks      *jwksFile // nil without auth.jwt.jwksFile
	parser    *jwt.Parser
	validator *jwt.Validator // the parser's claim checks, for a cached token
	now       func() time.Time

	mu       sync.Mutex
	verified map[string]verified // tokens whose signature checked out, by token
}

// verified is a token whose signature a key of set gen verified: its claims'
// times and audience are checked again at every use, its signature not.
type verified struct {
	claims *Claims
	gen    uint64
}

// maxVerified bounds the tokens remembered: a public-key signature costs
// ~60 µs to check, a map look-up well under one.
const maxVerified = 4096

// Option changes a Verifier at construction.
type Option func(*Verifier)

// WithClock makes the verifier read the time from now (tests). Default
// time.Now.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// NewVerifier loads the keys of cfg. log receives the JWKS file's reload
// failures (never a token); nil discards them.
func NewVerifier(cfg JWT, log *slog.Logger, opts ...Option) (*Verifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := (Config{JWT: cfg}).Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{now: time.Now}
	for _, o := range opts {
		o(v)
	}
	var err error
	if v.static, err = staticKeys(cfg); err != nil {
		return nil, err
	}
	if cfg.JWKSFile != "" {
		every, _ := duration("", cfg.JWKSCheck, time.Second)
		if v.jwks, err = openJWKS(cfg.JWKSFile, every, v.now(), log); err != nil {
			return nil, err
		}
	}
	if len(v.static) == 0 && v.jwks == nil {
		return nil, errors.New("auth.jwt: no key (secret, secretFile, keys or jwksFile)")
	}
	leeway, _ := duration("", cfg.Leeway, 30*time.Second)
	popts := []jwt.ParserOption{jwt.WithLeeway(leeway), jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return v.now() })}
	if cfg.Audience != "" {
		popts = append(popts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(popts...)
	v.validator = jwt.NewValidator(popts...)
	v.verified = map[string]verified{}
	return v, nil
}

// BearerToken is the token of an Authorization header value ("Bearer
// <token>", RFC 6750 §2.1; the scheme is case-insensitive).
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", ErrMissing
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", unauthorized("token-malformed", "the Authorization header is not \"Bearer <token>\"")
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" {
		return "", ErrMissing
	}
	return tok, nil
}

// FromRequest is the bearer token of r's Authorization header.
func FromRequest(r *http.Request) (string, error) {
	return BearerToken(r.Header.Get("Authorization"))
}

// Verify checks a token's signature, algorithm and time and audience claims
// and returns its claims. A refusal is an *Error naming the check.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	if len(token) > MaxTokenBytes {
		return nil, unauthorized("token-malformed", fmt.Sprintf("the token is longer than %d bytes", MaxTokenBytes))
	}
	gen := v.keySet()
	v.mu.Lock()
	hit, ok := v.verified[token]
	v.mu.Unlock()
	if ok && hit.gen == gen {
		if err := v.validator.Validate(hit.claims); err != nil {
			return nil, refusal(err)
		}
		c := *hit.claims
		return &c, nil
	}
	c := &Claims{}
	if _, err := v.parser.ParseWithClaims(token, c, v.keyFor); err != nil {
		return nil, refusal(err)
	}
	v.remember(token, c, gen)
	return c, nil
}

// keySet names the keys tokens are verified against now: the static keys
// never change, the JWKS file's are numbered as they are read.
func (v *Verifier) keySet() uint64 {
	if v.jwks == nil {
		return 0
	}
	return v.jwks.generation(v.now())
}

// remember keeps a verified token's claims, dropping an arbitrary one when
// full (a token in use comes back on its next request).
func (v *Verifier) remember(token string, c *Claims, gen uint64) {
	kept := *c
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.verified) >= maxVerified {
		for t := range v.verified {
			delete(v.verified, t)
			break
		}
	}
	v.verified[token] = verified{claims: &kept, gen: gen}
}

// Authorize verifies token and checks that it grants action on stream.
func (v *Verifier) Authorize(token string, action Action, stream string) (*Claims, error) {
	c, err := v.Verify(token)
	if err != nil {
		return nil, err
	}
	if !c.Allows(action, stream) {
		return c, refuse(http.StatusForbidden, ErrNotGranted.Check, fmt.Sprintf("the token does not allow %s on stream %s", action, stream))
	}
	return c, nil
}

// errAlgorithm and errNoKey come out of keyFor through the parser's error.
var (
	errAlgorithm = errors.New("algorithm not accepted")
	errNoKey     = errors.New("no key")
)

// keyFor picks the keys that may verify t: those of its algorithm's family
// (and curve), with its kid when it names one. A kid no key has makes the
// JWKS file be looked at again first, so a key added there is honoured soon.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	pick := func(ks []key, set *jwt.VerificationKeySet) (algOK bool) {
		for _, k := range ks {
			if !k.fits(alg) {
				continue
			}
			algOK = true
			if kid == "" || k.id == "" || k.id == kid {
				set.Keys = append(set.Keys, k.key)
			}
		}
		return algOK
	}
	var set jwt.VerificationKeySet
	now := v.now()
	algOK := pick(v.static, &set)
	if v.jwks != nil {
		algOK = pick(v.jwks.current(now, false), &set) || algOK
		if len(set.Keys) == 0 && kid != "" {
			algOK = pick(v.jwks.current(now, true), &set) || algOK
		}
	}
	switch {
	case !algOK:
		return nil, errAlgorithm
	case len(set.Keys) == 0:
		return nil, errNoKey
	}
	return set, nil
}

// refusal names the check a parser error failed, without the token or the
// parser's words about its contents.
func refusal(err error) *Error {
	switch {
	case errors.Is(err, errAlgorithm), errors.Is(err, jwt.ErrTokenUnverifiable) && !errors.Is(err, errNoKey):
		return unauthorized("token-algorithm", "the token's signing algorithm is not accepted")
	case errors.Is(err, errNoKey):
		return unauthorized("token-key", "no configured key has the token's key id")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthorized("token-malformed", "the token is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthorized("token-signature", "the token's signature does not verify with any configured key")
	case errors.Is(err, jwt.ErrTokenExpired):
		return unauthorized("token-expired", "the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return unauthorized("token-not-yet-valid", "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthorized("token-audience", "the token is not for this audience")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return unauthorized("token-issuer", "the token is from another issuer")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthorized("token-claims", "the token has no exp claim")
	}
	return unauthorized("token-invalid", "the token's claims are invalid")
}
