package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/wasm"
)

// BenchmarkWHIPPostAuth is a WHIP POST's HTTP path in one process — routing,
// the auth check at the handler's entry, reading a 3 KB offer — without auth
// and with it: an HS256, EdDSA or ES256 token, and HS256 followed by the auth
// slot running the built-in auth-grants module. The difference between "off"
// and the others is what auth adds to every POST (the SDP answer, ICE and
// placement that follow are the same either way).
func BenchmarkWHIPPostAuth(b *testing.B) {
	grant := auth.Grant{Streams: []string{"cam-*"}, Allow: []auth.Action{auth.Publish}}
	claims := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Grants: []auth.Grant{grant}}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pemOf := func(pub any) string {
		der, _ := x509.MarshalPKIXPublicKey(pub)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	sign := func(m jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name   string
		jwt    *auth.JWT
		token  string
		policy bool
	}{
		{"off", nil, "", false},
		{"HS256", &auth.JWT{Secret: secret}, sign(jwt.SigningMethodHS256, []byte(secret)), false},
		{"EdDSA", &auth.JWT{Keys: []auth.Key{{PEM: pemOf(edPriv.Public())}}}, sign(jwt.SigningMethodEdDSA, edPriv), false},
		{"ES256", &auth.JWT{Keys: []auth.Key{{PEM: pemOf(&ecPriv.PublicKey)}}}, sign(jwt.SigningMethodES256, ecPriv), false},
		{"HS256+slot", &auth.JWT{Secret: secret}, sign(jwt.SigningMethodHS256, []byte(secret)), true},
	}
	offer := strings.Repeat("a=x-offer-line-of-an-sdp-offer\r\n", 96)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchPost(b, c.jwt, c.token, c.policy, offer) })
	}
}

// benchPost measures POSTs of offer through a gateway's auth check configured
// with j (nil: off), carrying token, with the auth slot when policy is set.
func benchPost(b *testing.B, j *auth.JWT, token string, policy bool, offer string) {
	g := &Gateway{}
	if j != nil {
		v, err := auth.NewVerifier(*j, nil)
		if err != nil {
			b.Fatal(err)
		}
		a := Auth{Verifier: v}
		if policy {
			a.Policy = authSlot(b)
		}
		WithAuth(a)(g)
	}
	runtime.GC() // not the garbage of setting up (compiling the slot's module)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{stream}", func(w http.ResponseWriter, r *http.Request) {
		if g.auth != nil && !g.authorizeHTTP(w, r, wire.KindPublish, r.PathValue("stream")) {
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/whip/cam-1", strings.NewReader(offer))
		r.Header.Set("Content-Type", "application/sdp")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != http.StatusCreated {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// authSlot is a policy host whose auth slot runs the committed built-in.
func authSlot(b *testing.B) *wasm.Host {
	b.Helper()
	mod, err := os.ReadFile("../plugins/auth-grants.wasm")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	path := dir + "/auth.wasm"
	if err := os.WriteFile(path, mod, 0o600); err != nil {
		b.Fatal(err)
	}
	h, err := wasm.New(context.Background(), wasm.Config{CacheDir: dir, Slots: map[string]wasm.SlotConfig{wasm.SlotAuth: {Module: path, Failure: wasm.FailClosed}}},
		slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// BenchmarkWHIPPostAuthAB alternates, in turns of 256, POSTs through a
// gateway without auth and through ones checking an HS256 token, an EdDSA
// token, and an HS256 token then the auth slot (the built-in auth-grants
// module), so that all see the same load on a shared machine, and reports the
// mean POST without auth and what each adds to it.
func BenchmarkWHIPPostAuthAB(b *testing.B) {
	claims := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Grants: []auth.Grant{{Streams: []string{"cam-*"}, Allow: []auth.Action{auth.Publish}}}}
	hsTok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edTok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(edPriv)
	der, _ := x509.MarshalPKIXPublicKey(edPriv.Public())
	edPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	offer := strings.Repeat("a=x-offer-line-of-an-sdp-offer\r\n", 96)
	type variant struct {
		mux   http.Handler
		token string
		total time.Duration
		n     int
	}
	mk := func(j *auth.JWT, token string, slot bool) *variant {
		g := &Gateway{}
		if j != nil {
			v, err := auth.NewVerifier(*j, nil)
			if err != nil {
				b.Fatal(err)
			}
			a := Auth{Verifier: v}
			if slot {
				a.Policy = authSlot(b)
			}
			WithAuth(a)(g)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /whip/{stream}", func(w http.ResponseWriter, r *http.Request) {
			if g.auth != nil && !g.authorizeHTTP(w, r, wire.KindPublish, r.PathValue("stream")) {
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
		})
		return &variant{mux: mux, token: token}
	}
	vs := []*variant{mk(nil, "", false), mk(&auth.JWT{Secret: secret}, hsTok, false), mk(&auth.JWT{Keys: []auth.Key{{PEM: edPEM}}}, edTok, false),
		mk(&auth.JWT{Secret: secret}, hsTok, true)}
	runtime.GC() // not the garbage of compiling the slot's module
	const turn = 256
	b.ResetTimer()
	for i := 0; i < b.N; i += turn * len(vs) {
		for _, v := range vs {
			start := time.Now()
			for range turn {
				r := httptest.NewRequest(http.MethodPost, "/whip/cam-1", strings.NewReader(offer))
				r.Header.Set("Content-Type", "application/sdp")
				if v.token != "" {
					r.Header.Set("Authorization", "Bearer "+v.token)
				}
				w := httptest.NewRecorder()
				v.mux.ServeHTTP(w, r)
				if w.Code != http.StatusCreated {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
			v.total += time.Since(start)
			v.n += turn
		}
	}
	mean := func(v *variant) float64 { return float64(v.total.Nanoseconds()) / float64(max(v.n, 1)) }
	b.ReportMetric(mean(vs[0])/1e3, "off-µs/post")
	b.ReportMetric((mean(vs[1])-mean(vs[0]))/1e3, "HS256-added-µs")
	b.ReportMetric((mean(vs[2])-mean(vs[0]))/1e3, "EdDSA-added-µs")
	b.ReportMetric((mean(vs[3])-mean(vs[0]))/1e3, "HS256+slot-added-µs")
}
