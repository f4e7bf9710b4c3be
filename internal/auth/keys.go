package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// key is one verification key and the algorithms it may verify.
type key struct {
	id  string
	key any // []byte, ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey
	// alg, when set (a JWK's "alg"), is the one algorithm the key verifies.
	alg string
}

// fits reports whether k may verify a token signed with alg: the key's type
// decides the algorithm family, and an ECDSA key's curve the one ES
// algorithm, so no token can pick how its key is used (algorithm confusion).
func (k key) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch kk := k.key.(type) {
	case []byte:
		return alg == "HS256" || alg == "HS384" || alg == "HS512"
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *ecdsa.PublicKey:
		switch kk.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return kk.N.BitLen() >= 2048
		}
	}
	return false
}

// staticKeys are the keys of the configuration that do not change: the
// secret and the PEM keys.
func staticKeys(c JWT) ([]key, error) {
	var ks []key
	secret := c.Secret
	if c.SecretFile != "" {
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secretFile: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
	}
	if secret != "" {
		if len(secret) < minSecret {
			return nil, fmt.Errorf("auth.jwt secret is %d bytes: an HMAC secret needs at least %d", len(secret), minSecret)
		}
		ks = append(ks, key{key: []byte(secret)})
	}
	for i, kc := range c.Keys {
		data := []byte(kc.PEM)
		if kc.File != "" {
			b, err := os.ReadFile(kc.File)
			if err != nil {
				return nil, fmt.Errorf("auth.jwt.keys[%d]: %w", i, err)
			}
			data = b
		}
		pub, err := parsePublicPEM(data)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.keys[%d]: %w", i, err)
		}
		ks = append(ks, key{id: kc.ID, key: pub})
	}
	return ks, nil
}

// parsePublicPEM reads a PEM public key (SubjectPublicKeyInfo, or PKCS #1 for
// RSA) of a type a token may be signed with.
func parsePublicPEM(data []byte) (any, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var pub any
	var err error
	switch blk.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("PEM public key: %w", err)
	}
	switch pub.(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("public key type %T cannot verify a JWT", pub)
}

// jwk is a JSON Web Key (RFC 7517) as far as verification needs it.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
	K   string `json:"k"`
}

// parseJWKS reads a JWK Set. A key that is not for signatures or is of an
// unknown type is skipped, as RFC 7517 §5 asks; a malformed one is an error,
// so a broken file does not silently drop keys.
func parseJWKS(data []byte) ([]key, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var ks []key
	for i, j := range set.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		k, err := j.key()
		if errors.Is(err, errUnknownKty) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, j.Kid, err)
		}
		if j.Alg == "none" {
			return nil, fmt.Errorf("JWKS key %d (kid %q): alg none", i, j.Kid)
		}
		ks = append(ks, key{id: j.Kid, key: k, alg: j.Alg})
	}
	return ks, nil
}

var errUnknownKty = errors.New("unknown key type")

func (j jwk) key() (any, error) {
	switch j.Kty {
	case "oct":
		k, err := b64(j.K)
		if err != nil {
			return nil, err
		}
		if len(k) < minSecret {
			return nil, fmt.Errorf("oct key of %d bytes: at least %d", len(k), minSecret)
		}
		return k, nil
	case "OKP":
		x, err := b64(j.X)
		if err != nil {
			return nil, err
		}
		if j.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("OKP key: want Ed25519 with a %d-byte x", ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(x), nil
	case "EC":
		return j.ecKey()
	case "RSA":
		n, err := b64(j.N)
		if err != nil {
			return nil, err
		}
		e, err := b64(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("RSA key: bad e")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	}
	return nil, errUnknownKty
}

func (j jwk) ecKey() (any, error) {
	var curve elliptic.Curve
	switch j.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("EC key: curve %q", j.Crv)
	}
	x, err := b64(j.X)
	if err != nil {
		return nil, err
	}
	y, err := b64(j.Y)
	if err != nil {
		return nil, err
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("EC key: x and y must be %d bytes", size)
	}
	// The uncompressed point, which ecdsa.ParseUncompressedPublicKey checks
	// is on the curve.
	pt := append(append([]byte{4}, x...), y...)
	return ecdsaPublicKey(curve, pt)
}

func ecdsaPublicKey(curve elliptic.Curve, pt []byte) (*ecdsa.PublicKey, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
	if err != nil {
		return nil, fmt.Errorf("EC key: %w", err)
	}
	return pub, nil
}

func b64(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("base64url: %w", err)
	}
	return b, nil
}
