package abi

import "fmt"

// KindPublishEnd is the kind of an auth input that tells the policy a publish
// it allowed is no longer live; the answer is ignored.
const KindPublishEnd = "publish-end"

// AuthInput is what an auth policy decides on: the request, and the token
// the gateway's JWT check verified (or none).
type AuthInput struct {
	Kind     string `json:"kind"` // publish, play, proxy (a call through the edge proxy) or publish-end
	StreamID string `json:"stream"`
	Path     string `json:"path"`     // the request path (HTTP) or the namespace (MoQ)
	Protocol string `json:"protocol"` // whip, whep, moq
	Client   string `json:"client,omitempty"`
	Headers  Pairs  `json:"-"` // the request headers the gateway passes (auth.headers)
	// Token is the verified token's claims; nil when no token verified.
	Token *TokenClaims `json:"token,omitempty"`
	// Check is the built-in JWT check's verdict: "" when the token granted
	// the action on the stream, else the check that failed ("token-missing",
	// "token-expired", "not-granted", …) or "off" when the gateway has no
	// keys. After the JWT check (auth.policy after) it is always "".
	Check    string `json:"check,omitempty"`
	NowNanos int64  `json:"now"` // Unix time in nanoseconds
}

// TokenClaims are the claims of a verified token an auth policy may use.
type TokenClaims struct {
	Subject      string `json:"sub,omitempty"`
	Tenant       string `json:"tenant,omitempty"`
	Role         string `json:"role,omitempty"`
	Issuer       string `json:"iss,omitempty"`
	ExpiresNanos int64  `json:"exp,omitempty"` // Unix ns
	// Granted says whether the token's grants allow the action on the stream.
	Granted    bool  `json:"granted"`
	MaxViewers int   `json:"maxViewers,omitempty"`
	MaxBitrate int64 `json:"maxBitrate,omitempty"`
}

// AuthOutput allows a request, or denies it with a status and a reason.
type AuthOutput struct {
	Allow bool `json:"allow"`
	// Status is the HTTP status of a denial, 4xx or 5xx. Zero means 403.
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// AppendAuthInput encodes in.
func AppendAuthInput(b []byte, in *AuthInput) []byte {
	e := Encoder{b}
	e.str(in.Kind)
	e.str(in.StreamID)
	e.str(in.Path)
	e.str(in.Protocol)
	e.str(in.Client)
	e.pairs(in.Headers)
	if c := in.Token; c == nil {
		e.uvarint(0)
	} else {
		e.uvarint(1)
		e.str(c.Subject)
		e.str(c.Tenant)
		e.str(c.Role)
		e.str(c.Issuer)
		e.varint(c.ExpiresNanos)
		e.uvarint(b2u(c.Granted))
		e.varint(int64(c.MaxViewers))
		e.varint(c.MaxBitrate)
	}
	e.str(in.Check)
	e.varint(in.NowNanos)
	return e.B
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// DecodeAuthInput decodes an AuthInput; its strings are copies.
func DecodeAuthInput(b []byte, in *AuthInput) error {
	in.Token = nil
	return decodeAuthInput(&decoder{b: b}, in, nil)
}

// DecodeAuthInputView decodes an AuthInput whose strings point into b and
// whose claims, when it has any, go in claims: what a guest does, so that
// deciding allocates nothing.
func DecodeAuthInputView(b []byte, in *AuthInput, claims *TokenClaims) error {
	return decodeAuthInput(&decoder{b: b, view: true}, in, claims)
}

func decodeAuthInput(d *decoder, in *AuthInput, claims *TokenClaims) error {
	in.Kind = d.str()
	in.StreamID = d.str()
	in.Path = d.str()
	in.Protocol = d.str()
	in.Client = d.str()
	in.Headers = d.pairs()
	in.Token = nil
	switch has := d.uvarint(); {
	case has == 1:
		if claims == nil {
			claims = &TokenClaims{}
		}
		*claims = TokenClaims{Subject: d.str(), Tenant: d.str(), Role: d.str(), Issuer: d.str(), ExpiresNanos: d.varint()}
		g := d.uvarint()
		if g > 1 {
			d.fail("granted is not 0 or 1")
		}
		claims.Granted, claims.MaxViewers, claims.MaxBitrate = g == 1, d.int(), d.varint()
		in.Token = claims
	case has != 0:
		d.fail(fmt.Sprintf("token presence %d is not 0 or 1", has))
	}
	in.Check = d.str()
	in.NowNanos = d.varint()
	return d.end()
}

// AppendAuthOutput encodes out.
func AppendAuthOutput(b []byte, out *AuthOutput) []byte {
	e := Encoder{b}
	e.uvarint(b2u(out.Allow))
	e.varint(int64(out.Status))
	e.str(out.Reason)
	return e.B
}

// DecodeAuthOutput decodes an AuthOutput. A denial's status must be 4xx or
// 5xx; zero becomes 403.
func DecodeAuthOutput(b []byte, out *AuthOutput) error {
	d := decoder{b: b}
	a := d.uvarint()
	if a > 1 {
		d.fail(fmt.Sprintf("allow is %d, not 0 or 1", a))
	}
	out.Allow, out.Status, out.Reason = a == 1, d.int(), d.str()
	if d.err == nil && !out.Allow {
		if out.Status == 0 {
			out.Status = 403
		}
		if out.Status < 400 || out.Status > 599 {
			d.fail(fmt.Sprintf("deny with status %d, want 4xx or 5xx", out.Status))
		}
	}
	return d.end()
}
