package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthorize feeds arbitrary Authorization headers through the whole token
// path. It must never panic, a refusal must be an *Error with a 401 or 403 that
// does not quote the header, and only a token signed with the secret may pass.
func FuzzAuthorize(f *testing.F) {
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(Grant{Streams: []string{"cam-*"}, Allow: []Action{Publish}})).SignedString([]byte(secret))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, s := range []string{"Bearer " + good, "Bearer " + none, "", "Bearer", "Bearer a.b.c", "Basic x",
		"Bearer eyJhbGciOiJIUzI1NiJ9.e30.", "Bearer " + good[:len(good)/2], "bearer " + strings.ToUpper(good)} {
		f.Add(s)
	}
	v, err := NewVerifier(JWT{Secret: secret}, nil, WithClock(func() time.Time { return t0 }))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := BearerToken(header)
		if err == nil {
			_, err = v.Authorize(tok, Publish, "cam-1")
		}
		if err == nil {
			if tok != good {
				// Only the one signed token grants: anything else passing is
				// a forgery (or a harmless re-encoding of the same JWS).
				if _, perr := jwt.NewParser().Parse(tok, func(*jwt.Token) (any, error) { return []byte(secret), nil }); perr != nil {
					t.Fatalf("accepted a token that does not verify: %q", tok)
				}
			}
			return
		}
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != 401 && ae.Status != 403 {
			t.Fatalf("refusal %v is not a 401/403 *Error", err)
		}
		if len(tok) >= 16 && strings.Contains(ae.Error(), tok) {
			t.Fatalf("refusal quotes the token: %v", ae)
		}
	})
}
