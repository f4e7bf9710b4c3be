package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/gateway/internal/moq"
	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/abi"
)

const secret = "0123456789abcdef0123456789abcdef"

// recordingPolicy is an auth policy that allows the clients it is told to and
// records what it was asked.
type recordingPolicy struct {
	mu    sync.Mutex
	seen  []abi.AuthInput
	allow func(*abi.AuthInput) bool
}

func (p *recordingPolicy) Authorize(_ context.Context, in *abi.AuthInput) (abi.AuthOutput, error) {
	p.mu.Lock()
	p.seen = append(p.seen, *in)
	p.mu.Unlock()
	if p.allow(in) {
		return abi.AuthOutput{Allow: true}, nil
	}
	return abi.AuthOutput{Status: 429, Reason: "quota"}, nil
}

func (p *recordingPolicy) asked() []abi.AuthInput {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]abi.AuthInput(nil), p.seen...)
}

func token(t *testing.T, tenant string, grants ...auth.Grant) string {
	t.Helper()
	c := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Grants: grants, Tenant: tenant}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func gatewayWith(t *testing.T, mode string, keys bool, p AuthPolicy) *Gateway {
	t.Helper()
	a := Auth{Mode: mode, Policy: p}
	if keys {
		v, err := auth.NewVerifier(auth.JWT{Secret: secret}, nil)
		if err != nil {
			t.Fatal(err)
		}
		a.Verifier = v
	}
	g := &Gateway{}
	WithAuth(a)(g)
	return g
}

func post(g *Gateway, kind, stream, tok string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/whip/"+stream, nil)
	r.Header.Set("User-Agent", "test-encoder")
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	g.authorizeHTTP(w, r, kind, stream)
	return w
}

var publishAll = auth.Grant{Streams: []string{"*"}, Allow: []auth.Action{auth.Publish}}

// After the JWT check, the policy is asked only about requests the check
// passed, with the token's claims and the headers it may see; its denial
// answers with its status and reason.
func TestThePolicyAfterTheJWTCheckSeesOnlyGrantedRequests(t *testing.T) {
	p := &recordingPolicy{allow: func(in *abi.AuthInput) bool { return in.StreamID != "full" }}
	g := gatewayWith(t, auth.PolicyAfter, true, p)
	tok := token(t, "acme", publishAll)
	if w := post(g, wire.KindPublish, "cam", ""); w.Code != 401 {
		t.Fatalf("no token: %d", w.Code)
	}
	if w := post(g, wire.KindPlay, "cam", tok); w.Code != 403 {
		t.Fatalf("a publish-only token playing: %d", w.Code)
	}
	if n := len(p.asked()); n != 0 {
		t.Fatalf("the policy was asked %d times about requests the JWT check refused", n)
	}
	if w := post(g, wire.KindPublish, "cam", tok); w.Code != 200 {
		t.Fatalf("a granted publish the policy allows: %d %s", w.Code, w.Body)
	}
	w := post(g, wire.KindPublish, "full", tok)
	if w.Code != 429 || !strings.Contains(w.Body.String(), `"quota"`) || !strings.Contains(w.Body.String(), "problems/policy") {
		t.Fatalf("a publish the policy denies: %d %s", w.Code, w.Body)
	}
	in := p.asked()[0]
	if in.Token == nil || in.Token.Tenant != "acme" || !in.Token.Granted || in.Check != "" || in.Headers.Value("User-Agent") != "test-encoder" || in.Protocol != "whip" {
		t.Fatalf("the policy's input: %+v (token %+v)", in, in.Token)
	}
}

// Instead of the JWT check, the policy decides alone: it sees the check's
// verdict (a missing token, an ungranted one) and may allow anyway.
func TestThePolicyInsteadOfTheJWTCheckDecidesAlone(t *testing.T) {
	p := &recordingPolicy{allow: func(in *abi.AuthInput) bool { return in.Kind == wire.KindPlay }}
	g := gatewayWith(t, auth.PolicyInstead, true, p)
	if w := post(g, wire.KindPlay, "cam", ""); w.Code != 200 {
		t.Fatalf("an anonymous play the policy allows: %d %s", w.Code, w.Body)
	}
	if w := post(g, wire.KindPublish, "cam", token(t, "acme", publishAll)); w.Code != 429 {
		t.Fatalf("a granted publish the policy denies: %d", w.Code)
	}
	seen := p.asked()
	if seen[0].Check != "token-missing" || seen[0].Token != nil || seen[1].Check != "" || seen[1].Token == nil {
		t.Fatalf("the policy's inputs: %+v", seen)
	}
	// Without keys every request reaches the policy with check "off".
	p2 := &recordingPolicy{allow: func(*abi.AuthInput) bool { return true }}
	g2 := gatewayWith(t, auth.PolicyInstead, false, p2)
	if w := post(g2, wire.KindPublish, "cam", "whatever"); w.Code != 200 || p2.asked()[0].Check != "off" {
		t.Fatalf("no keys: %d %+v", w.Code, p2.asked())
	}
}

// A publish the policy allowed is reported back as publish-end when it is
// replaced, so a policy that counts publishes never counts one twice; a
// PATCH does not reach the policy.
func TestThePolicyIsToldWhenAPublishItAllowedIsReplaced(t *testing.T) {
	p := &recordingPolicy{allow: func(*abi.AuthInput) bool { return true }}
	g := gatewayWith(t, auth.PolicyAfter, true, p)
	tok := token(t, "acme", publishAll)
	post(g, wire.KindPublish, "cam", tok)
	r := httptest.NewRequest(http.MethodPatch, "/whip/cam/res", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if !g.authorizeHTTP(httptest.NewRecorder(), r, wire.KindPublish, "cam") {
		t.Fatal("a PATCH with the publish token was refused")
	}
	post(g, wire.KindPublish, "cam", tok)
	var kinds []string
	for _, in := range p.asked() {
		kinds = append(kinds, in.Kind)
	}
	if strings.Join(kinds, ",") != "publish,publish-end,publish" && strings.Join(kinds, ",") != "publish,publish,publish-end" {
		t.Fatalf("the policy was asked %v; want publish, then the first publish's end beside the second", kinds)
	}
}

// A refusal is an *auth.Error the MoQ endpoint turns into UNAUTHORIZED.
func TestMoQRequestsWithoutATokenAreRefusedAsMissing(t *testing.T) {
	g := gatewayWith(t, "", true, nil)
	err := g.authorizeMoQ(context.Background(), moqAuth(wire.KindPublish, "cam", nil))
	if !errors.Is(err, auth.ErrMissing) {
		t.Fatalf("%v, want token-missing", err)
	}
	if err := g.authorizeMoQ(context.Background(), moqAuth(wire.KindPublish, "cam", []byte(token(t, "", publishAll)))); err != nil {
		t.Fatal(err)
	}
}

func moqAuth(kind, stream string, tok []byte) moq.Auth {
	return moq.Auth{Kind: kind, Stream: stream, Client: "127.0.0.1", Token: tok}
}
