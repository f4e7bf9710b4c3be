package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Proxied calls are throttled the M2 way: while the purpose's queue is at
// concurrent × deactive, a call matching an "error" pattern gets M2's 510, a
// "redirect" one a redirect to the origin, an "origin" one is answered by the
// route's origin instead of the service, and one no pattern matches goes on to
// the service; below concurrent × reactive every call goes on again.
func TestProxiedCallsAreThrottledTheM2Way(t *testing.T) {
	svc := startTestService(t, "svc-agent")
	origin := startTestService(t, "svc-origin")
	cfg := writeConfig(t, smallPool+fmt.Sprintf(`agent:
  queueTimeout: 60s
  services: {default: %q}
gateway:
  proxy:
    routes:
      - {prefix: /api/, rewrite: /echo/, origin: "http://%s"}
plugins:
  slots:
    throttle:
      config:
        relay.enable: "true"
        relay.wait.deactive: "2"
        relay.wait.reactive: "1"
        relay.origin: https://origin.example
        relay.matchingList: '[{"pattern":"^/api/heavy/","action":"error"},{"pattern":"^/api/redir/","action":"redirect"},{"pattern":"^/api/orig/","action":"origin"}]'
`, svc.http, origin.http))
	_, base := startDev(t, "--config", cfg)
	pc := &proxyCluster{base: base}
	ctx := ctxT(t, 90*time.Second)
	liveStream(t, ctx, base, "pool-filler") // the pool's one node carries one stream
	agentTag(t, base, "conc", "1")

	served := func(path, by, when string) {
		t.Helper()
		code, e, raw := pc.call(t, http.MethodGet, path, "cam-1", nil)
		if code != http.StatusOK || e.Service != by {
			t.Fatalf("%s: GET %s = %d %s; want 200 from %s", when, path, code, raw, by)
		}
	}
	served("/api/heavy/x", "svc-agent", "not throttled")

	_, cancelA := waitingPublish(t, base, "wait-a")
	_, cancelB := waitingPublish(t, base, "wait-b")
	agentTag(t, base, "q", "2")
	code, _, raw := pc.call(t, http.MethodGet, "/api/heavy/x", "cam-1", nil)
	if code != 510 || raw != `application/json {"enable":false,"error":"throttle"}` {
		t.Fatalf("throttled, an error rule: %d %s; want 510 with M2's body as application/json", code, raw)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/redir/x?q=1", nil)
	req.Header.Set("X-Stream-Id", "cam-1")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "https://origin.example/api/redir/x" {
		t.Fatalf("throttled, a redirect rule: %d Location %q; want 307 to the origin", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, e, raw := pc.call(t, http.MethodGet, "/api/orig/x", "cam-1", nil)
	if e.Service != "svc-origin" || e.Path != "/api/orig/x" {
		t.Fatalf("throttled, an origin rule: %s; want the route's origin to answer with the path as it came", raw)
	}
	served("/api/light/x", "svc-agent", "throttled, no rule matches")

	cancelA()
	cancelB()
	agentTag(t, base, "q", "0")
	served("/api/heavy/x", "svc-agent", "below concurrent × reactive again")
}

// M2's 504 rule: once a service answers 504 it is given two calls at once,
// and a third gets a 504 from the gateway at once, until it answers 200.
func TestAServiceThatAnswered504IsHeldToTwoCallsUntilA200(t *testing.T) {
	svc := startTestService(t, "svc-agent")
	cfg := writeConfig(t, fmt.Sprintf(`agent:
  services: {default: %q}
gateway:
  proxy:
    routes:
      - {prefix: /svc/, rewrite: /}
`, svc.http))
	_, base := startDev(t, "--config", cfg)
	pc := &proxyCluster{base: base}
	limited := func() []string {
		_, body := get(t, base+"/v1/proxy")
		var v struct{ LimitedUpstreams []string }
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("/v1/proxy: %v %s", err, body)
		}
		return v.LimitedUpstreams
	}
	// third holds two calls open at the service (which answers them nothing
	// until they go) and makes a third: its status, then the two are let go.
	third := func() (int, string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for range 2 {
			go func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/svc/hold", nil)
				req.Header.Set("X-Stream-Id", "cam-1")
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, n := get(t, "http://"+svc.http+"/holding")
			if n == "2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the service holds %s calls, want 2", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		code, _, raw := pc.call(t, http.MethodGet, "/svc/echo/third", "cam-1", nil)
		cancel()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, n := get(t, "http://"+svc.http+"/holding"); n == "0" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the held calls did not end")
			}
		}
		return code, raw
	}
	if code, raw := third(); code != http.StatusOK {
		t.Fatalf("before any 504, a third call at once got %d %s", code, raw)
	}
	if code, _, _ := pc.call(t, http.MethodGet, "/svc/status/504", "cam-1", nil); code != http.StatusGatewayTimeout {
		t.Fatalf("the service's 504 came back as %d", code)
	}
	if l := limited(); len(l) != 1 || !strings.HasSuffix(l[0], "/default") {
		t.Fatalf("/v1/proxy lists %v as held; want the default service of the agent", l)
	}
	if code, raw := third(); code != http.StatusGatewayTimeout || !strings.Contains(raw, "upstream-limited") {
		t.Fatalf("after a 504, a third call at once got %d %s; want the gateway's 504 upstream-limited", code, raw)
	}
	if code, _, _ := pc.call(t, http.MethodGet, "/svc/status/200", "cam-1", nil); code != http.StatusOK {
		t.Fatalf("the service's 200 came back as %d", code)
	}
	if l := limited(); len(l) != 0 {
		t.Fatalf("after a 200, /v1/proxy still lists %v", l)
	}
	if code, raw := third(); code != http.StatusOK {
		t.Fatalf("after a 200, a third call at once got %d %s", code, raw)
	}
}

// With auth on, a proxied call needs a token granting "proxy" on its stream:
// none gets 401 with a Bearer challenge, a play token or a token for another
// stream 403, and a proxy token for the stream reaches the service.
func TestWithAuthAProxiedCallNeedsAProxyTokenForItsStream(t *testing.T) {
	svc := startTestService(t, "svc-agent")
	cfg, _ := authConfig(t, fmt.Sprintf(`agent:
  services: {default: %q}
gateway:
  proxy:
    routes:
      - {prefix: /api/, rewrite: /echo/}
`, svc.http))
	_, base := startDev(t, "--config", cfg)
	callWith := func(token, stream string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/x", nil)
		req.Header.Set("X-Stream-Id", stream)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	proxyTok := sluiceToken(t, "--config", cfg, "--stream", "cam-*", "--allow", "proxy", "--ttl", "1h")
	playTok := sluiceToken(t, "--config", cfg, "--stream", "cam-1", "--allow", "play", "--ttl", "1h")
	if code, body, h := callWith("", "cam-1"); code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %q %s; want 401 with a Bearer challenge", code, h.Get("WWW-Authenticate"), body)
	}
	if code, body, _ := callWith(playTok, "cam-1"); code != http.StatusForbidden {
		t.Fatalf("a play token: %d %s; want 403", code, body)
	}
	if code, body, _ := callWith(proxyTok, "other-1"); code != http.StatusForbidden {
		t.Fatalf("a proxy token for cam-*, calling for other-1: %d %s; want 403", code, body)
	}
	if code, body, _ := callWith(proxyTok, "cam-7"); code != http.StatusOK || !strings.Contains(body, `"service":"svc-agent"`) {
		t.Fatalf("a proxy token for cam-*, calling for cam-7: %d %s; want the service's answer", code, body)
	}
}
