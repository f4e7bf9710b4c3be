package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

const testSecret = "test-secret-0123456789abcdef0123"

// bearer adds a token to every request of http.DefaultClient, which the WHIP
// and WHEP clients of internal/mediatest use. The tests of this package do
// not run in parallel.
type bearer struct {
	token atomic.Value // string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, _ := b.token.Load().(string); tok != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return b.next.RoundTrip(r)
}

// withBearer makes mediatest's clients send the token set by the function it
// returns, until the test ends.
func withBearer(t *testing.T) func(token string) {
	prev := http.DefaultClient.Transport
	b := &bearer{next: http.DefaultTransport}
	if prev != nil {
		b.next = prev
	}
	b.token.Store("")
	http.DefaultClient.Transport = b
	t.Cleanup(func() { http.DefaultClient.Transport = prev })
	return func(tok string) { b.token.Store(tok) }
}

// authConfig writes a config with an HMAC secret, an audience and a JWKS
// file (empty of keys at first); it returns the config and the JWKS paths.
func authConfig(t *testing.T, extra ...string) (cfgPath, jwksPath string) {
	dir := t.TempDir()
	jwksPath = filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "sluice.yaml")
	cfg := "auth:\n  jwt:\n    secret: " + testSecret + "\n    audience: sluice\n    jwksFile: " + jwksPath + "\n    jwksCheck: 100ms\n" + strings.Join(extra, "")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, jwksPath
}

// sluiceToken runs `sluice token` and returns the token it prints.
func sluiceToken(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runSluice(append([]string{"token"}, args...)...)
	if err != nil {
		t.Fatalf("sluice token %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(out)
}

// forge signs claims that `sluice token` would not make.
func forge(t *testing.T, m jwt.SigningMethod, key any, edit func(*auth.Claims)) string {
	t.Helper()
	c := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)), Audience: jwt.ClaimStrings{"sluice"}},
		Grants: []auth.Grant{{Streams: []string{"*"}, Allow: []auth.Action{auth.Publish, auth.Play}}}}
	if edit != nil {
		edit(c)
	}
	tok, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// With auth configured, a token that grants publish publishes and one that
// grants play plays; every other request to WHIP and WHEP (POST, PATCH,
// DELETE) is refused with the status and problem type of the check that
// failed, and the live stream, the node processes and the goroutine count are
// undisturbed. A key added to the JWKS file is honoured while running.
func TestWithAuthOnlyATokenThatGrantsTheActionPublishesOrPlays(t *testing.T) {
	cfgPath, jwksPath := authConfig(t)
	p, base := startDev(t, "--config", cfgPath)
	setToken := withBearer(t)
	ctx := ctxT(t, 90*time.Second)
	api, _ := mediatest.API()
	video, audio := knownMedia(t)

	pubTok := sluiceToken(t, "--config", cfgPath, "--stream", "cam-*", "--allow", "publish", "--ttl", "1h")
	playTok := sluiceToken(t, "--config", cfgPath, "--stream", "cam-1", "--allow", "play", "--ttl", "1h")
	setToken(pubTok)
	pub, err := mediatest.Publish(ctx, api, base, "cam-1")
	if err != nil {
		t.Fatalf("a valid publish token did not publish: %v", err)
	}
	defer pub.Close()
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	go func() {
		for sendCtx.Err() == nil {
			_ = pub.Send(sendCtx, video, audio)
		}
	}()
	// A first viewer makes the gateway's subscription to the stream, which
	// outlives it, so the counts below are of the refusals alone.
	setToken(playTok)
	if err := playFrames(ctx, t, api, base, "cam-1"); err != nil {
		t.Fatalf("the play token did not play: %v", err)
	}
	setToken("")
	time.Sleep(time.Second)
	nodesBefore := len(children(p.cmd.Process.Pid))
	goBefore := goroutines(t, base)

	offer := recvOffer(t, api)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	res := pub.Location // /whip/cam-1/{res}
	cases := []struct {
		name, method, path, auth string
		status                   int
		check                    string
	}{
		{"no Authorization header", "POST", "/whip/cam-2", "", 401, "token-missing"},
		{"malformed header", "POST", "/whip/cam-2", "Token " + pubTok, 401, "token-malformed"},
		{"not a JWT", "POST", "/whip/cam-2", "Bearer not-a-jwt", 401, "token-malformed"},
		{"play-only token publishing", "POST", "/whip/cam-1", "Bearer " + playTok, 403, "not-granted"},
		{"publish token on another stream", "POST", "/whip/studio", "Bearer " + pubTok, 403, "not-granted"},
		{"play token on another stream", "POST", "/whep/cam-2", "Bearer " + playTok, 403, "not-granted"},
		{"expired", "POST", "/whip/cam-2", "Bearer " + forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c *auth.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		}), 401, "token-expired"},
		{"not yet valid", "POST", "/whip/cam-2", "Bearer " + forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c *auth.Claims) {
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
		}), 401, "token-not-yet-valid"},
		{"wrong audience", "POST", "/whip/cam-2", "Bearer " + forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c *auth.Claims) {
			c.Audience = jwt.ClaimStrings{"elsewhere"}
		}), 401, "token-audience"},
		{"wrong key", "POST", "/whip/cam-2", "Bearer " + forge(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), nil), 401, "token-signature"},
		{"alg none", "POST", "/whip/cam-2", "Bearer " + forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), 401, "token-algorithm"},
		{"Ed25519 key not in the JWKS file yet", "POST", "/whip/cam-2", "Bearer " + forge(t, jwt.SigningMethodEdDSA, edPriv, nil), 401, "token-algorithm"},
		{"PATCH of the live session without a token", "PATCH", res, "", 401, "token-missing"},
		{"DELETE of the live session with a play token", "DELETE", res, "Bearer " + playTok, 403, "not-granted"},
	}
	for _, c := range cases {
		hdr := map[string]string{}
		if c.auth != "" {
			hdr["Authorization"] = c.auth
		}
		ctype := "application/sdp"
		if c.method == "PATCH" {
			ctype = "application/trickle-ice-sdpfrag"
		}
		resp, body := do(t, c.method, base+c.path, ctype, offer, hdr)
		m := problemType.FindStringSubmatch(body)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" || m == nil || m[1] != c.check {
			t.Errorf("%s: got %d %s; want %d problem %q", c.name, resp.StatusCode, body, c.status, c.check)
		}
		if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without a Bearer challenge (%q)", c.name, resp.Header.Get("WWW-Authenticate"))
		}
		if tok := strings.TrimPrefix(c.auth, "Bearer "); len(tok) > 20 && strings.Contains(body, tok[len(tok)-20:]) {
			t.Errorf("%s: the answer echoes the token", c.name)
		}
	}

	// The refusals left nothing behind. (Counted before any viewer of this
	// test comes and goes: a WHEP viewer leaves goroutines of its own.)
	if n := len(children(p.cmd.Process.Pid)); n != nodesBefore {
		t.Errorf("node processes: %d before the refused requests, %d after", nodesBefore, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := goroutines(t, base); n > goBefore+5; n = goroutines(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before the refused requests, %d after", goBefore, n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The key put into the JWKS file while the gateway runs is honoured.
	jwk, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "OKP", "crv": "Ed25519", "kid": "new",
		"x": base64.RawURLEncoding.EncodeToString(edPriv.Public().(ed25519.PublicKey))}}})
	if err := os.WriteFile(jwksPath+".tmp", jwk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(jwksPath+".tmp", jwksPath); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	setToken(forge(t, jwt.SigningMethodEdDSA, edPriv, func(c *auth.Claims) { c.Grants[0].Allow = []auth.Action{auth.Play} }))
	if err := playFrames(ctx, t, api, base, "cam-1"); err != nil {
		t.Fatalf("a token of the key added to the JWKS file did not play: %v", err)
	}

	// The play token plays the live stream, which the refusals left running.
	setToken(playTok)
	if err := playFrames(ctx, t, api, base, "cam-1"); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
	checkLimits(t, ctx, api, base, cfgPath, setToken)
}

// checkLimits: a token's viewer limit refuses the viewer past it (403
// viewer-limit), and a publisher over its token's bitrate is ended.
func checkLimits(t *testing.T, ctx context.Context, api *webrtc.API, base, cfgPath string, setToken func(string)) {
	one := sluiceToken(t, "--config", cfgPath, "--stream", "cam-1", "--allow", "play", "--max-viewers", "1")
	setToken(one)
	view, err := mediatest.Play(ctx, api, base, "cam-1")
	if err != nil {
		t.Fatalf("the first viewer of a max-viewers 1 token: %v", err)
	}
	defer view.Close()
	resp, body := do(t, "POST", base+"/whep/cam-1", "application/sdp", recvOffer(t, api), map[string]string{"Authorization": "Bearer " + one})
	if m := problemType.FindStringSubmatch(body); resp.StatusCode != 403 || m == nil || m[1] != "viewer-limit" {
		t.Errorf("the second viewer of a max-viewers 1 token: %d %s, want 403 viewer-limit", resp.StatusCode, body)
	}

	setToken(sluiceToken(t, "--config", cfgPath, "--stream", "cam-9", "--allow", "publish", "--max-bitrate", "1000"))
	pub, err := mediatest.Publish(ctx, api, base, "cam-9")
	setToken("")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	video, audio := knownMedia(t)
	sendCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = pub.Send(sendCtx, video, audio) }()
	admin := sluiceToken(t, "--config", cfgPath, "--role", "read")
	live := func() int {
		resp, _ := do(t, "GET", base+"/v1/streams/cam-9", "", "", map[string]string{"Authorization": "Bearer " + admin})
		return resp.StatusCode
	}
	for deadline := time.Now().Add(5 * time.Second); live() != 200; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream of the bitrate-limited publisher never went live")
		}
	}
	for deadline := time.Now().Add(15 * time.Second); live() != 404; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a publisher far over its token's 1000 bit/s limit was not ended")
		}
	}
}

// playFrames plays stream until more than 10 video frames arrived.
func playFrames(ctx context.Context, t *testing.T, api *webrtc.API, base, stream string) error {
	view, err := mediatest.Play(ctx, api, base, stream)
	if err != nil {
		return err
	}
	defer view.Close()
	if err := mediatest.WaitConnected(ctx, view.PC); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for v, _ := view.Frames(); len(v) <= 10; v, _ = view.Frames() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the viewer received %d video frames of the live stream", len(v))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// `sluice push --token` with a token from `sluice token` publishes over MoQ
// and a WHEP viewer with a play token watches it; a push without a token is
// refused as UNAUTHORIZED, and so is a MoQ SUBSCRIBE without one, while one
// with a play token is served.
func TestSluicePushWithATokenPublishesAndMoQViewersNeedAPlayToken(t *testing.T) {
	cfgPath, _ := authConfig(t)
	moqAddr := freeport.Loopback(t)
	_, base := startDev(t, "--config", cfgPath, "--moq", moqAddr)
	pubTok := sluiceToken(t, "--config", cfgPath, "--stream", "push-*", "--allow", "publish")
	playTok := sluiceToken(t, "--config", cfgPath, "--stream", "push-*", "--allow", "play")

	out, err := runSluice("push", "--stream", "push-1", "--url", "moqt://"+moqAddr, "--video", "../../testdata/video.ivf")
	if err == nil || !strings.Contains(strings.ToLower(out), "token-missing") {
		t.Fatalf("a push without a token was not refused for its missing token: %v\n%s", err, out)
	}
	pusher := start(t, "push", "--stream", "push-1", "--url", "moqt://"+moqAddr, "--token", pubTok,
		"--video", "../../testdata/video.ivf", "--audio", "../../testdata/audio.ogg", "--loop")
	ctx := ctxT(t, 60*time.Second)
	setToken := withBearer(t)
	setToken(playTok)
	api, _ := mediatest.API()
	var view *mediatest.Viewer
	for deadline := time.Now().Add(5 * time.Second); ; {
		view, err = mediatest.Play(ctx, api, base, "push-1")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("WHEP play of the pushed stream with a play token: %v", err)
	}
	defer view.Close()
	waitPackets(t, view, 50, 10*time.Second)

	_, hash := get(t, "http://"+moqAddr+"/certificate.sha256")
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"", false}, {pubTok, false}, {playTok, true}} {
		mv, err := dialViewer(ctx, moqAddr, hash, moqt.Draft19)
		if err != nil {
			t.Fatal(err)
		}
		mv.token = tc.token
		_, err = mv.subscribe(ctx, "push-1"+hang.Suffix, hang.CatalogTrack)
		mv.close()
		if tc.ok && err != nil || !tc.ok && (err == nil || !regexp.MustCompile(`refused: 0x1 `).MatchString(err.Error())) {
			t.Errorf("SUBSCRIBE with token %.10q: %v (want served: %v)", tc.token, err, tc.ok)
		}
	}
	_ = pusher.cmd.Process.Signal(os.Interrupt)
}

// /v1 takes the static API token, or a JWT with the admin role (anything)
// or the read role (GET only); without either it refuses, naming why.
func TestV1TakesTheAPITokenOrAJWTWithARole(t *testing.T) {
	const static = "static-api-token-0123456789"
	cfgPath, _ := authConfig(t, "gateway:\n  apiToken: "+static+"\n")
	_, base := startDev(t, "--config", cfgPath)
	admin := sluiceToken(t, "--config", cfgPath, "--role", "admin")
	read := sluiceToken(t, "--config", cfgPath, "--role", "read")
	noRole := sluiceToken(t, "--config", cfgPath, "--stream", "*", "--allow", "play")
	for _, c := range []struct {
		name, method, path, token string
		status                    int
		check                     string
	}{
		{"no token", "GET", "/v1/streams", "", 401, "token-missing"},
		{"the static API token", "GET", "/v1/streams", static, 200, ""},
		{"a read token", "GET", "/v1/cluster", read, 200, ""},
		{"a token without a role", "GET", "/v1/streams", noRole, 403, "no-role"},
		{"a read token changing a slot", "PUT", "/v1/plugins/route", read, 403, "read-only"},
		{"a forged admin token", "GET", "/v1/streams", forge(t, jwt.SigningMethodHS256, []byte(strings.Repeat("z", 32)), func(c *auth.Claims) { c.Role = "admin" }), 401, "token-signature"},
	} {
		hdr := map[string]string{}
		if c.token != "" {
			hdr["Authorization"] = "Bearer " + c.token
		}
		resp, body := do(t, c.method, base+c.path, "application/wasm", "not wasm", hdr)
		m := problemType.FindStringSubmatch(body)
		if resp.StatusCode != c.status || c.check != "" && (m == nil || m[1] != c.check) {
			t.Errorf("%s: %s %s = %d %s; want %d %s", c.name, c.method, c.path, resp.StatusCode, body, c.status, c.check)
		}
	}
	// An admin token gets past the guard to the slot's own checks.
	resp, body := do(t, "PUT", base+"/v1/plugins/route", "application/wasm", "not wasm", map[string]string{"Authorization": "Bearer " + admin})
	if resp.StatusCode == 401 || resp.StatusCode == 403 || resp.StatusCode < 400 {
		t.Errorf("PUT of a non-module with an admin token: %d %s; want the slot to refuse the module", resp.StatusCode, body)
	}
	// sluice status takes a JWT with a role as its --token.
	if out, err := runSluice("status", "--addr", strings.TrimPrefix(base, "http://"), "--token", read); err != nil {
		t.Errorf("sluice status --token <read JWT>: %v\n%s", err, out)
	}
}

// With auth.policy after and the tenant-quota example in the auth slot
// (loaded with PUT /v1/plugins/auth and an admin token), a tenant whose quota
// is one stream publishes one; a second publish is refused with the policy's
// 429 until the first ends, and then it publishes.
func TestTheAuthSlotKeepsATenantsStreamQuotaEndToEnd(t *testing.T) {
	cfgPath, _ := authConfig(t, "  policy: after\nplugins:\n  slots:\n    auth:\n      config: {max-streams: \"1\"}\n")
	_, base := startDev(t, "--config", cfgPath)
	mod := filepath.Join(t.TempDir(), "quota.wasm")
	sluiceOK(t, "plugin", "build", "../../examples/plugins/tenant-quota", "-o", mod)
	wasmBytes, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	admin := sluiceToken(t, "--config", cfgPath, "--role", "admin")
	if resp, body := do(t, "PUT", base+"/v1/plugins/auth", "application/wasm", string(wasmBytes), map[string]string{"Authorization": "Bearer " + admin}); resp.StatusCode != 200 {
		t.Fatalf("PUT /v1/plugins/auth: %d %s", resp.StatusCode, body)
	}
	setToken := withBearer(t)
	setToken(sluiceToken(t, "--config", cfgPath, "--stream", "q-*", "--allow", "publish", "--tenant", "acme"))
	ctx := ctxT(t, 60*time.Second)
	api, _ := mediatest.API()
	first, err := mediatest.Publish(ctx, api, base, "q-1")
	if err != nil {
		t.Fatalf("the tenant's first stream: %v", err)
	}
	if err := mediatest.WaitConnected(ctx, first.PC); err != nil {
		t.Fatal(err)
	}
	_, err = mediatest.Publish(ctx, api, base, "q-2")
	var he *mediatest.HTTPError
	if !errors.As(err, &he) || he.Status != 429 || !strings.Contains(he.Body, "already publishes 1 streams") {
		t.Fatalf("the tenant's second stream while the first is live: %v; want the policy's 429", err)
	}
	time.Sleep(2 * time.Second) // live long enough for the gateway to have seen it
	first.Close()               // DELETE with the token: the gateway tells the policy it ended
	var second *mediatest.Publisher
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if second, err = mediatest.Publish(ctx, api, base, "q-2"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("the tenant's second stream after the first ended: %v", err)
	}
	second.Close()
}

// A MoQ push over its token's bitrate limit is ended by the gateway, as a
// WHIP publisher is: `sluice push` stops, saying the server ended its
// announcement, and the stream is gone.
func TestAMoQPushOverItsTokensBitrateIsEnded(t *testing.T) {
	cfgPath, _ := authConfig(t)
	moqAddr := freeport.Loopback(t)
	_, base := startDev(t, "--config", cfgPath, "--moq", moqAddr)
	tok := sluiceToken(t, "--config", cfgPath, "--stream", "slow-*", "--allow", "publish", "--max-bitrate", "20000")
	out, err := runSluice("push", "--stream", "slow-1", "--url", "moqt://"+moqAddr, "--token", tok,
		"--video", "../../testdata/video.ivf", "--audio", "../../testdata/audio.ogg", "--loop")
	if err == nil || !strings.Contains(out, "PUBLISH_NAMESPACE") {
		t.Fatalf("a push over its token's 20 kbit/s ended with %v:\n%s\nwant the server to end its announcement", err, out)
	}
	withBearer(t)(sluiceToken(t, "--config", cfgPath, "--role", "read"))
	if code, body := get(t, base+"/v1/streams/slow-1"); code != 404 {
		t.Fatalf("the ended push's stream is still listed: %d %s", code, body)
	}
}
