package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
)

// fakeAgent takes tunnels as an agent does and answers each open line as its
// script says; a 200 splices the tunnel to the service.
type fakeAgent struct {
	id, api string
	answer  func(o wire.TunnelOpen) string // "200 ok", "421 stream-not-here", …
	mu      sync.Mutex
	opens   []string // the open lines it got
}

func (a *fakeAgent) opened() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.opens...)
}

// tunnelRig is a proxy whose locator hands out fake agents in turn, and the
// service the agents splice to, which speaks HTTP/1.1 and h2c.
type tunnelRig struct {
	p       *Proxy
	agents  []*fakeAgent
	asked   int
	mu      sync.Mutex
	protos  []string // the protocols of the calls the service got
	service string
}

func (r *tunnelRig) ProxyAgent(context.Context, session.ProxyRequest) (session.Agent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[min(r.asked, len(r.agents)-1)]
	r.asked++
	return session.Agent{ID: a.id, API: a.api}, nil
}

func (r *tunnelRig) Admit(context.Context, session.Admission) (session.ThrottleOutput, bool, error) {
	return session.ThrottleOutput{Action: session.Admit}, true, nil
}

func newTunnelRig(t *testing.T, answers ...func(wire.TunnelOpen) string) *tunnelRig {
	t.Helper()
	rig := &tunnelRig{}
	svc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rig.mu.Lock()
		rig.protos = append(rig.protos, r.Proto)
		rig.mu.Unlock()
		io.WriteString(w, "pong "+r.URL.Path)
	}))
	svc.Config.Protocols = new(http.Protocols)
	svc.Config.Protocols.SetHTTP1(true)
	svc.Config.Protocols.SetUnencryptedHTTP2(true)
	svc.Start()
	t.Cleanup(svc.Close)
	rig.service = svc.Listener.Addr().String()

	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	agentID, err := ca.Issue("agent", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	gwID, err := ca.Issue("gw", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, ans := range answers {
		a := &fakeAgent{id: "agent-" + string(rune('1'+i)), answer: ans}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", agentID.ServerTLS(wire.ALPNTunnel))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		a.api = ln.Addr().String()
		go a.serve(ln, rig.service)
		rig.agents = append(rig.agents, a)
	}
	p, err := New(Config{Routes: []Route{{Prefix: "/api/", Rewrite: "/"}}, AgentTLS: gwID.ClientTLS()}, rig,
		slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(metrics.NewSet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	rig.p = p
	return rig
}

func (a *fakeAgent) serve(ln net.Listener, service string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, err := wire.ReadTunnelLine(c)
			if err != nil {
				return
			}
			o, err := wire.ParseTunnelOpen(line)
			if err != nil {
				return
			}
			a.mu.Lock()
			a.opens = append(a.opens, strings.TrimSuffix(string(line), "\n"))
			a.mu.Unlock()
			ans := a.answer(o)
			if _, err := io.WriteString(c, ans+"\n"); err != nil || ans != "200 ok" {
				return
			}
			s, err := net.Dial("tcp", service)
			if err != nil {
				return
			}
			defer s.Close()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			_, _ = io.Copy(c, s)
		}()
	}
}

// call proxies one call and returns its status and body.
func (r *tunnelRig) call(t *testing.T, grpc bool) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/ping", strings.NewReader("x"))
	req.Header.Set("X-Stream-Id", "cam-1")
	if grpc {
		req.Header.Set("Content-Type", "application/grpc")
	}
	w := httptest.NewRecorder()
	r.p.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func always(ans string) func(wire.TunnelOpen) string {
	return func(wire.TunnelOpen) string { return ans }
}

// An agent that answers that the stream is not there sends the call, which
// has gone nowhere, to the agent the locator names when asked again.
func TestACallWhoseTunnelIsMisdirectedGoesWhereTheStreamIsNow(t *testing.T) {
	rig := newTunnelRig(t, always("421 stream-not-here"), always("200 ok"))
	if code, body := rig.call(t, false); code != http.StatusOK || body != "pong /ping" {
		t.Fatalf("call = %d %q, want the service's pong from the second agent", code, body)
	}
	if got := rig.agents[0].opened(); len(got) != 1 || got[0] != "default cam-1 h1" {
		t.Fatalf("the first agent got opens %q, want one for default cam-1 h1", got)
	}
	if n := len(rig.agents[1].opened()); n != 1 {
		t.Fatalf("the second agent got %d opens, want 1", n)
	}
}

// A gRPC call goes over h2c; when the agent says its service speaks only
// HTTP/1.1, the call goes again as HTTP/1.1, and so do later ones.
func TestACallSpeaksTheProtocolTheAgentSaysItsServiceSpeaks(t *testing.T) {
	rig := newTunnelRig(t, func(o wire.TunnelOpen) string {
		if o.Proto == wire.TunnelH2C {
			return "505 h1"
		}
		return "200 ok"
	})
	for range 2 {
		if code, body := rig.call(t, true); code != http.StatusOK || body != "pong /ping" {
			t.Fatalf("call = %d %q", code, body)
		}
	}
	rig.mu.Lock()
	protos := strings.Join(rig.protos, " ")
	rig.mu.Unlock()
	if protos != "HTTP/1.1 HTTP/1.1" {
		t.Fatalf("the service got %s, want HTTP/1.1 twice", protos)
	}
	if got := rig.agents[0].opened(); len(got) != 2 || got[0] != "default cam-1 h2c" || got[1] != "default cam-1 h1" {
		t.Fatalf("opens %q, want one h2c refused, then one h1 kept for both calls", got)
	}
	// Remembered for modeTTL only: the operator may have made the service
	// speak both since, and a later gRPC call asks for HTTP/2 again.
	var key any
	rig.p.tun.modes.Range(func(k, v any) bool {
		key = k
		rig.p.tun.modes.Store(k, mode{v.(mode).proto, time.Now().Add(-2 * modeTTL)})
		return false
	})
	if key == nil {
		t.Fatal("the service's one protocol was not remembered")
	}
	greq := httptest.NewRequest(http.MethodPost, "/grpc.health.v1.Health/Check", nil)
	greq.Header.Set("Content-Type", "application/grpc")
	if tr := rig.p.tun.transport(strings.SplitN(key.(string), "/", 2)[0], "default", greq); tr != rig.p.tun.h2 {
		t.Fatal("a gRPC call still goes as HTTP/1.1 after the remembered protocol expired")
	}

	rig = newTunnelRig(t, always("200 ok"))
	if code, _ := rig.call(t, true); code != http.StatusOK {
		t.Fatalf("gRPC-typed call = %d", code)
	}
	rig.mu.Lock()
	defer rig.mu.Unlock()
	if rig.protos[0] != "HTTP/2.0" {
		t.Fatalf("a gRPC call reached a service that speaks both as %s, want HTTP/2.0", rig.protos[0])
	}
}

// Refusals the call cannot get round are answered as the agent used to answer
// them, naming the route and the stream.
func TestATunnelRefusalIsTheCallersProblem(t *testing.T) {
	for _, c := range []struct {
		answer string
		status int
		kind   string
	}{
		{"404 no-service", http.StatusNotFound, "no-service"},
		{"502 service-down", http.StatusBadGateway, "service-down"},
		{"400 bad-open", http.StatusBadGateway, "agent-unreachable"},
	} {
		rig := newTunnelRig(t, always(c.answer))
		code, body := rig.call(t, false)
		if code != c.status || !strings.Contains(body, c.kind) || !strings.Contains(body, "route /api/, stream cam-1") {
			t.Fatalf("agent answering %q: call = %d %s, want %d %s naming route and stream", c.answer, code, body, c.status, c.kind)
		}
	}
}

// A tunnel's pool key survives the host the transports see: any agent
// address, IPv6 included, and any service and stream name.
func TestTunnelHostsNameTheirTunnelBack(t *testing.T) {
	for _, k := range [][3]string{{"127.0.0.1:7443", "default", "cam-1"}, {"[::1]:9", "grpc", "a.b~c_d-E"}} {
		api, svc, stream, err := parseTunnelHost(tunnelHost(k[0], k[1], k[2]) + ":80")
		if err != nil || api != k[0] || svc != k[1] || stream != k[2] {
			t.Fatalf("%q came back as %q %q %q, %v", k, api, svc, stream, err)
		}
	}
	if _, _, _, err := parseTunnelHost("example.com:80"); err == nil {
		t.Fatal("a host that names no tunnel was read as one")
	}
}

// Closing the proxy closes its idle tunnels, HTTP/1.1 and h2c: no goroutine
// of theirs is left, here or at the agent.
func TestClosingTheProxyLeavesNoTunnelGoroutine(t *testing.T) {
	rig := newTunnelRig(t, always("200 ok"))
	before := runtime.NumGoroutine()
	for _, grpc := range []bool{false, false, true} {
		if code, _ := rig.call(t, grpc); code != http.StatusOK {
			t.Fatalf("call = %d", code)
		}
	}
	rig.p.Close()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before the calls", runtime.NumGoroutine(), before)
		}
	}
}
