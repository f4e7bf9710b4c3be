package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func claims(grants ...Grant) *Claims {
	return &Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)), Audience: jwt.ClaimStrings{"sluice"}}, Grants: grants}
}

func hs(t *testing.T, key string, c *Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newVerifier(t *testing.T, cfg JWT) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg, nil, WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func pubPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Every way a token can fail names its own check and status, and a token that
// fits is granted exactly what it says.
func TestAuthorizeNamesTheCheckThatFailed(t *testing.T) {
	v := newVerifier(t, JWT{Secret: secret, Audience: "sluice", Leeway: "1s"})
	pub := Grant{Streams: []string{"cam-*"}, Allow: []Action{Publish}}
	play := Grant{Streams: []string{"cam-1"}, Allow: []Action{Play}}
	expired := claims(pub)
	expired.ExpiresAt = jwt.NewNumericDate(t0.Add(-time.Minute))
	early := claims(pub)
	early.NotBefore = jwt.NewNumericDate(t0.Add(time.Minute))
	otherAud := claims(pub)
	otherAud.Audience = jwt.ClaimStrings{"someone-else"}
	noExp := claims(pub)
	noExp.ExpiresAt = nil
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(pub)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, claims(pub)).SignedString([]byte(secret))
	valid := hs(t, secret, claims(pub))
	for _, tc := range []struct {
		name, token, stream string
		action              Action
		check               string // "" = granted
		status              int
	}{
		{"valid publish token publishes", valid, "cam-7", Publish, "", 0},
		{"HS512 with the same secret", hs512, "cam-7", Publish, "", 0},
		{"play-only token cannot publish", hs(t, secret, claims(play)), "cam-1", Publish, "not-granted", 403},
		{"play-only token plays", hs(t, secret, claims(play)), "cam-1", Play, "", 0},
		{"wrong stream", valid, "studio", Publish, "not-granted", 403},
		{"expired", hs(t, secret, expired), "cam-7", Publish, "token-expired", 401},
		{"not yet valid", hs(t, secret, early), "cam-7", Publish, "token-not-yet-valid", 401},
		{"wrong audience", hs(t, secret, otherAud), "cam-7", Publish, "token-audience", 401},
		{"no exp", hs(t, secret, noExp), "cam-7", Publish, "token-claims", 401},
		{"wrong key", hs(t, strings.Repeat("x", 32), claims(pub)), "cam-7", Publish, "token-signature", 401},
		{"alg none", none, "cam-7", Publish, "token-algorithm", 401},
		{"signature cut off", valid[:strings.LastIndex(valid, ".")+1], "cam-7", Publish, "token-signature", 401},
		{"not a JWT", "hello", "cam-7", Publish, "token-malformed", 401},
		{"empty", "", "cam-7", Publish, "token-missing", 401},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), "cam-7", Publish, "token-malformed", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Authorize(tc.token, tc.action, tc.stream)
			if tc.check == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Check != tc.check || ae.Status != tc.status {
				t.Fatalf("got %v, want check %s status %d", err, tc.check, tc.status)
			}
			if tc.token != "" && strings.Contains(ae.Error(), tc.token[:min(len(tc.token), 20)]) {
				t.Fatalf("the error quotes the token: %v", ae)
			}
		})
	}
}

// A token signed with HMAC using an asymmetric key's public bytes as the
// secret (the classic algorithm confusion) is refused: a public key verifies
// only its own algorithm.
func TestAPublicKeyIsNeverUsedAsAnHMACSecret(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	p := pubPEM(t, pub)
	v := newVerifier(t, JWT{Keys: []Key{{PEM: p}}})
	for _, forged := range []string{hs(t, p, claims()), hs(t, string(pub)+strings.Repeat("\x00", 8), claims())} {
		if _, err := v.Verify(forged); err == nil || err.(*Error).Check != "token-algorithm" {
			t.Fatalf("forged HS256 token: %v", err)
		}
	}
}

// Ed25519 and ECDSA keys, inline or from a file, verify their own tokens; an
// ES384 header on a P-256 key does not fit; a kid picks its key.
func TestPublicKeysInlineAndFromFilesVerifyTheirTokens(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(file, []byte(pubPEM(t, &ecPriv.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, JWT{Keys: []Key{{ID: "ed", PEM: pubPEM(t, edPub)}, {ID: "ec", File: file}}})
	g := Grant{Streams: []string{"*"}, Allow: []Action{Play}}
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		tk := jwt.NewWithClaims(m, claims(g))
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name, token, check string
	}{
		{"EdDSA with kid", sign(jwt.SigningMethodEdDSA, edPriv, "ed"), ""},
		{"EdDSA without kid", sign(jwt.SigningMethodEdDSA, edPriv, ""), ""},
		{"ES256 from a file", sign(jwt.SigningMethodES256, ecPriv, "ec"), ""},
		{"EdDSA naming the EC key's kid", sign(jwt.SigningMethodEdDSA, edPriv, "ec"), "token-key"},
		{"ES384 on no P-384 key", sign(jwt.SigningMethodES384, otherEC, ""), "token-algorithm"},
		{"HS256 with no secret configured", hs(t, secret, claims(g)), "token-algorithm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Authorize(tc.token, Play, "x")
			switch {
			case tc.check == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.check != "" && (err == nil || err.(*Error).Check != tc.check):
				t.Fatalf("got %v, want %s", err, tc.check)
			}
		})
	}
}

func writeJWKS(t *testing.T, path string, keys ...map[string]string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"keys": keys})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // how an operator swaps keys atomically
		t.Fatal(err)
	}
}

func okp(kid string, pub ed25519.PublicKey) map[string]string {
	return map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": base64.RawURLEncoding.EncodeToString(pub)}
}

// A JWKS file swapped under a running verifier is honoured: the new key's
// tokens verify, the removed key's no longer do; a broken file keeps the
// previous keys.
func TestJWKSFileSwappedLiveIsHonoured(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	oldPub, oldPriv, _ := ed25519.GenerateKey(rand.Reader)
	newPub, newPriv, _ := ed25519.GenerateKey(rand.Reader)
	writeJWKS(t, path, okp("k1", oldPub))
	now := t0
	v, err := NewVerifier(JWT{JWKSFile: path, JWKSCheck: "1s"}, nil, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(priv ed25519.PrivateKey, kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims())
		tk.Header["kid"] = kid
		s, _ := tk.SignedString(priv)
		return s
	}
	if _, err := v.Verify(sign(oldPriv, "k1")); err != nil {
		t.Fatalf("old key before the swap: %v", err)
	}
	writeJWKS(t, path, okp("k2", newPub))
	now = now.Add(2 * time.Second)
	if _, err := v.Verify(sign(newPriv, "k2")); err != nil {
		t.Fatalf("new key after the swap: %v", err)
	}
	if _, err := v.Verify(sign(oldPriv, "k1")); err == nil {
		t.Fatal("the removed key still verifies")
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, err := v.Verify(sign(newPriv, "k2")); err != nil {
		t.Fatalf("a broken JWKS file dropped the keys: %v", err)
	}
}

func TestBearerTokenReadsOnlyTheBearerScheme(t *testing.T) {
	for _, tc := range []struct{ header, tok, check string }{
		{"Bearer abc", "abc", ""},
		{"bearer  abc", "abc", ""},
		{"", "", "token-missing"},
		{"Bearer ", "", "token-missing"},
		{"Basic dXNlcjpw", "", "token-malformed"},
		{"Bearerabc", "", "token-malformed"},
	} {
		tok, err := BearerToken(tc.header)
		if tc.check == "" && (err != nil || tok != tc.tok) || tc.check != "" && (err == nil || err.(*Error).Check != tc.check) {
			t.Errorf("%q: %q, %v", tc.header, tok, err)
		}
	}
	if !errors.Is(func() error { _, err := BearerToken(""); return err }(), ErrMissing) {
		t.Error("a missing header is not ErrMissing")
	}
	r, _ := http.NewRequest("GET", "/", nil)
	if _, err := FromRequest(r); !errors.Is(err, ErrMissing) {
		t.Error(err)
	}
}

func TestMatchTreatsStarAsAnyRun(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"cam-*", "cam-1", true}, {"cam-*", "cam-", true}, {"cam-*", "cam", false}, {"*", "x", true},
		{"cam-1", "cam-1", true}, {"cam-1", "cam-10", false}, {"*-hd", "cam-1-hd", true}, {"*-hd", "cam-1-sd", false},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"**", "abc", true},
	} {
		if Match(tc.p, tc.s) != tc.ok {
			t.Errorf("Match(%q, %q) = %v", tc.p, tc.s, !tc.ok)
		}
	}
	if ValidPattern("cam-*") != nil || ValidPattern("cam/*") == nil || ValidPattern("") == nil {
		t.Error("ValidPattern")
	}
}

// Config.Validate refuses what cannot work, before anything starts.
func TestConfigValidateRefusesShortSecretsAndUnknownPolicies(t *testing.T) {
	for _, c := range []Config{
		{JWT: JWT{Secret: "short"}},
		{Policy: "sometimes", JWT: JWT{Secret: secret}},
		{Policy: PolicyAfter},
		{JWT: JWT{Secret: secret, Leeway: "soon"}},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v was accepted", c)
		}
	}
	if err := (Config{JWT: JWT{Secret: secret}}).Validate(); err != nil {
		t.Error(err)
	}
	if (Config{}).Enabled() || !(Config{JWT: JWT{Secret: secret}}).Enabled() || !(Config{Policy: PolicyInstead}).Enabled() {
		t.Error("Enabled")
	}
}

// The signer's tokens verify with the matching configuration, for HMAC and a
// private key file.
func TestSignerTokensVerify(t *testing.T) {
	s, err := NewSigner(JWT{Secret: secret}, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(claims(Grant{Streams: []string{"cam-*"}, Allow: []Action{Publish}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newVerifier(t, JWT{Secret: secret}).Authorize(tok, Publish, "cam-2"); err != nil {
		t.Fatal(err)
	}
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecPriv)
	file := filepath.Join(t.TempDir(), "k.pem")
	_ = os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	s, err = NewSigner(JWT{SigningKey: file}, "k")
	if err != nil || s.Alg() != "ES256" {
		t.Fatalf("%v %v", s, err)
	}
	tok, _ = s.Sign(claims())
	if _, err := newVerifier(t, JWT{Keys: []Key{{ID: "k", PEM: pubPEM(t, s.Public())}}}).Verify(tok); err != nil {
		t.Fatal(err)
	}
}

// A token verified once is remembered, but its times are checked at every
// use: the same token, past its expiry, is refused as expired.
func TestARememberedTokenIsStillRefusedOnceExpired(t *testing.T) {
	now := t0
	v, err := NewVerifier(JWT{Secret: secret}, nil, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	tok := hs(t, secret, claims(Grant{Streams: []string{"cam-1"}, Allow: []Action{Play}}))
	for range 2 {
		if _, err := v.Authorize(tok, Play, "cam-1"); err != nil {
			t.Fatalf("a valid token: %v", err)
		}
	}
	if _, err := v.Authorize(tok, Publish, "cam-1"); err == nil {
		t.Fatal("a remembered play token was let publish")
	}
	now = t0.Add(2 * time.Hour)
	var ae *Error
	if _, err := v.Authorize(tok, Play, "cam-1"); !errors.As(err, &ae) || ae.Check != "token-expired" {
		t.Fatalf("the remembered token after its expiry: %v; want token-expired", err)
	}
}
