// Package auth verifies the bearer tokens (JWTs) that WHIP, WHEP, MoQ and the
// /v1 API take once an operator configures `auth`, and signs them for
// `sluice token`.
//
// A token grants actions (publish, play) on streams named exactly or by a
// pattern ("cam-*"), may carry limits the gateway enforces (viewers, bitrate)
// and a role for the API (admin, read). Keys are HMAC secrets, Ed25519 or
// ECDSA (or RSA) public keys inline or in files, and a JWKS file re-read when
// it changes. Only the algorithms the configured keys imply are accepted,
// never "none"; a key is only tried for the algorithm family it belongs to.
// Errors name the check that failed and never contain the token.
package auth

import (
	"fmt"
	"time"
)

// Config is the `auth` section of the configuration file. The zero value is
// auth off: every request is admitted without a token.
type Config struct {
	// JWT is the built-in token check.
	JWT JWT `yaml:"jwt"`
	// Policy says how the auth policy slot takes part: "" or "off" (default)
	// the slot is not consulted; "after" it decides after the JWT check has
	// passed, with the verified claims; "instead" it alone decides, with the
	// claims of a token that verifies (or none).
	Policy string `yaml:"policy"`
	// Headers are the request headers the auth policy sees. Default
	// [User-Agent, Origin].
	Headers []string `yaml:"headers"`
}

// JWT configures token verification. At least one of Secret, SecretFile,
// Keys and JWKSFile turns auth on.
type JWT struct {
	// Secret is an HMAC key (HS256, HS384, HS512), at least 32 bytes.
	Secret string `yaml:"secret"`
	// SecretFile holds the HMAC key (trailing newline trimmed).
	SecretFile string `yaml:"secretFile"`
	// Keys are public keys: PEM (SubjectPublicKeyInfo) inline or in a file.
	Keys []Key `yaml:"keys"`
	// JWKSFile is a JSON Web Key Set file, re-read when it changes (checked
	// at most once per JWKSCheck).
	JWKSFile string `yaml:"jwksFile"`
	// JWKSCheck is how often the JWKS file is looked at, e.g. "1s". Default 1s.
	JWKSCheck string `yaml:"jwksCheck"`
	// Audience, when set, must be in a token's aud claim. Default: aud is
	// not checked.
	Audience string `yaml:"audience"`
	// Issuer, when set, must be a token's iss claim. Default: not checked.
	Issuer string `yaml:"issuer"`
	// Leeway is the clock skew allowed on exp and nbf, e.g. "30s". Default 30s.
	Leeway string `yaml:"leeway"`
	// SigningKey is a PEM private key file (Ed25519, ECDSA, RSA) that
	// `sluice token` signs with; with none it signs with Secret. The gateway
	// never reads it.
	SigningKey string `yaml:"signingKey"`
}

// Key is one public key.
type Key struct {
	// ID matches a token's kid header. Default: none (tried for every token
	// whose algorithm fits).
	ID string `yaml:"kid"`
	// PEM is the key itself, "-----BEGIN PUBLIC KEY-----…".
	PEM string `yaml:"pem"`
	// File holds the PEM key instead.
	File string `yaml:"file"`
}

// Enabled reports whether auth is on: a key is configured, or the auth
// policy decides instead of the JWT check.
func (c Config) Enabled() bool {
	return c.JWT.Configured() || c.Policy == PolicyInstead
}

// PolicyOn reports whether the auth policy slot takes part in decisions.
func (c Config) PolicyOn() bool { return c.Policy == PolicyAfter || c.Policy == PolicyInstead }

// The values of Config.Policy.
const (
	PolicyOff     = "off"
	PolicyAfter   = "after"
	PolicyInstead = "instead"
)

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch c.Policy {
	case "", PolicyOff, PolicyAfter, PolicyInstead:
	default:
		return fmt.Errorf("auth.policy %q: want off, after or instead", c.Policy)
	}
	if c.Policy == PolicyAfter && !c.JWT.Configured() {
		return fmt.Errorf("auth.policy after: configure auth.jwt keys, or use policy: instead")
	}
	if _, err := duration("auth.jwt.leeway", c.JWT.Leeway, 30*time.Second); err != nil {
		return err
	}
	if _, err := duration("auth.jwt.jwksCheck", c.JWT.JWKSCheck, time.Second); err != nil {
		return err
	}
	if c.JWT.Secret != "" && len(c.JWT.Secret) < minSecret {
		return fmt.Errorf("auth.jwt.secret is %d bytes: an HMAC secret needs at least %d", len(c.JWT.Secret), minSecret)
	}
	return nil
}

// Configured reports whether a key is set, so the JWT check is on.
func (j JWT) Configured() bool {
	return j.Secret != "" || j.SecretFile != "" || len(j.Keys) > 0 || j.JWKSFile != ""
}

// minSecret is RFC 7518 §3.2's floor for HS256: a key as long as the hash.
const minSecret = 32

func duration(name, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q is not a duration (like 30s)", name, s)
	}
	return d, nil
}
