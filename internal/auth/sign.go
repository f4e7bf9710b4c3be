package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// Signer makes tokens with the configured signing key, for `sluice token`
// and tests.
type Signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
}

// NewSigner signs with cfg.SigningKey (a PEM private key file) or, without
// one, with the HMAC secret (HS256). kid, when set, goes in each token's
// header.
func NewSigner(cfg JWT, kid string) (*Signer, error) {
	if cfg.SigningKey != "" {
		b, err := os.ReadFile(cfg.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.signingKey: %w", err)
		}
		s, err := PrivateKeySigner(b)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.signingKey %s: %w", cfg.SigningKey, err)
		}
		s.kid = kid
		return s, nil
	}
	ks, err := staticKeys(JWT{Secret: cfg.Secret, SecretFile: cfg.SecretFile})
	if err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, errors.New("auth.jwt: nothing to sign with: set secret, secretFile or signingKey")
	}
	return &Signer{method: jwt.SigningMethodHS256, key: ks[0].key, kid: kid}, nil
}

// PrivateKeySigner signs with a PEM private key (PKCS #8, SEC 1 EC or
// PKCS #1 RSA): EdDSA for Ed25519, ES256/384/512 by curve, RS256 for RSA.
func PrivateKeySigner(pemData []byte) (*Signer, error) {
	blk, _ := pem.Decode(pemData)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return KeySigner(k)
}

// KeySigner signs with a private key value.
func KeySigner(k any) (*Signer, error) {
	switch kk := k.(type) {
	case ed25519.PrivateKey:
		return &Signer{method: jwt.SigningMethodEdDSA, key: kk}, nil
	case *ecdsa.PrivateKey:
		m := map[elliptic.Curve]jwt.SigningMethod{elliptic.P256(): jwt.SigningMethodES256,
			elliptic.P384(): jwt.SigningMethodES384, elliptic.P521(): jwt.SigningMethodES512}[kk.Curve]
		if m == nil {
			return nil, errors.New("ECDSA key on an unsupported curve")
		}
		return &Signer{method: m, key: kk}, nil
	case *rsa.PrivateKey:
		return &Signer{method: jwt.SigningMethodRS256, key: kk}, nil
	}
	return nil, fmt.Errorf("private key type %T cannot sign a JWT", k)
}

// Public is the public half of the signing key (nil for an HMAC secret).
func (s *Signer) Public() crypto.PublicKey {
	if pk, ok := s.key.(crypto.Signer); ok {
		return pk.Public()
	}
	return nil
}

// Alg is the JWS algorithm the signer uses.
func (s *Signer) Alg() string { return s.method.Alg() }

// Sign makes a token with claims c.
func (s *Signer) Sign(c *Claims) (string, error) {
	t := jwt.NewWithClaims(s.method, c)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	tok, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return tok, nil
}
