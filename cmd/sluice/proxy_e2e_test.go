package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicegw/sluice/internal/freeport"
)

// testService is a running runTestService child.
type testService struct {
	name, http, grpc string
	cmd              *exec.Cmd
}

func startTestService(t *testing.T, name string) *testService {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SLUICE_TEST_SERVICE="+name)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	var s testService
	if _, serr := fmt.Sscanf(line, "service %s http %s grpc %s", &s.name, &s.http, &s.grpc); err != nil || serr != nil {
		t.Fatalf("test service %s: %q %v %v", name, line, err, serr)
	}
	s.cmd = cmd
	return &s
}

// hooks are the add and remove hooks the service has had.
func (s *testService) hooks(t *testing.T) []map[string]any {
	t.Helper()
	_, body := get(t, "http://"+s.http+"/hooks")
	var hs []map[string]any
	if err := json.Unmarshal([]byte(body), &hs); err != nil {
		t.Fatalf("hooks of %s: %v: %s", s.name, err, body)
	}
	return hs
}

func (s *testService) hadHook(t *testing.T, kind, stream string) bool {
	for _, h := range s.hooks(t) {
		if h["hook"] == kind && h["stream"] == stream {
			return true
		}
	}
	return false
}

// proxyCluster is two agents, each with its own test service, and one gateway
// with proxy routes, as separate processes.
type proxyCluster struct {
	base   string // the gateway's http://host:port
	agents map[string]*proc
	svc    map[string]*testService // by agent id
}

func startProxyCluster(t *testing.T) *proxyCluster {
	t.Helper()
	dir := t.TempDir()
	sluiceOK(t, "ca", "init", "--dir", dir)
	pc := &proxyCluster{agents: map[string]*proc{}, svc: map[string]*testService{}}
	seed := freeport.Loopback(t)
	for i, id := range []string{"agent-1", "agent-2"} {
		svc := startTestService(t, "svc-"+id)
		pc.svc[id] = svc
		cfg := filepath.Join(dir, id+".yaml")
		writeFile(t, cfg, fmt.Sprintf("agent:\n  services: {default: %q, grpc: %q}\n  serviceHooks: {add: /stream/add, remove: /stream/remove}\n", svc.http, svc.grpc))
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", id, "--host", "127.0.0.1")
		args := []string{"agent", "--config", cfg, "--tls-dir", dir, "--tls-name", id, "--api", "127.0.0.1:0"}
		if i == 0 {
			args = append(args, "--bind", seed)
		} else {
			args = append(args, "--bind", freeport.Loopback(t), "--join", seed)
		}
		pc.agents[id] = start(t, args...)
		pc.agents[id].waitLine(regexp.MustCompile(`sluice agent `+id+` is ready`), 30*time.Second)
	}
	gcfg := filepath.Join(dir, "gateway.yaml")
	writeFile(t, gcfg, `gateway:
  proxy:
    routes:
      - {prefix: /api/, rewrite: /echo/}
      - {prefix: /cams/, rewrite: /echo/, stream: "path:1"}
      - {prefix: /grpc.health.v1., service: grpc}
      - {prefix: /slow/, rewrite: /hang, timeout: 1s}
      - {prefix: /silent/, rewrite: /hold, timeout: 1s}
      - {prefix: /open/, rewrite: /hang}
      - {prefix: /small/, rewrite: /echo/, maxBody: 100}
`)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "gw-1", "--host", "127.0.0.1")
	gw := start(t, "gateway", "--config", gcfg, "--tls-dir", dir, "--tls-name", "gw-1", "--bind", freeport.Loopback(t), "--join", seed,
		"--http", "127.0.0.1:0", "--ice-port", "-1", "--ice-bind", "127.0.0.1")
	pc.base = gw.waitLine(regexp.MustCompile(`ready on (http://\S+)/ `), 30*time.Second)[1]
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, body := get(t, pc.base+"/readyz")
		var r struct{ Agents int }
		if json.Unmarshal([]byte(body), &r) == nil && r.Agents == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway does not see both agents: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return pc
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// echo is what the test service saw of a call.
type echo struct {
	Service, Method, Path, Query, Stream, ForwardedFor string
	BodyBytes                                          int64
}

// call sends a request to the gateway and decodes an echo from a 200.
func (pc *proxyCluster) call(t *testing.T, method, path, stream string, body io.Reader) (int, echo, string) {
	t.Helper()
	req, err := http.NewRequest(method, pc.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if stream != "" {
		req.Header.Set("X-Stream-Id", stream)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e echo
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(b, &e)
	}
	return resp.StatusCode, e, resp.Header.Get("Content-Type") + " " + string(b)
}

// agentOf is the agent whose service answered for a stream.
func (pc *proxyCluster) agentOf(svc string) string {
	for id, s := range pc.svc {
		if s.name == svc {
			return id
		}
	}
	return ""
}

// Calls that name a stream reach the service on the agent that has the stream
// — the same agent every time, whichever way the call names it — with the
// route's rewrite applied; both agents get streams, and each agent's service
// hears of its streams through the add hook.
func TestProxiedCallsReachTheServiceOnTheAgentThatHasTheirStream(t *testing.T) {
	pc := startProxyCluster(t)
	where := map[string]string{} // stream → agent
	byAgent := map[string][]string{}
	for i := 0; i < 40 && (len(byAgent["agent-1"]) == 0 || len(byAgent["agent-2"]) == 0); i++ {
		stream := fmt.Sprintf("cam-%d", i)
		code, e, raw := pc.call(t, http.MethodGet, "/api/frames/latest?size=small", stream, nil)
		if code != http.StatusOK {
			t.Fatalf("GET /api/frames/latest for %s = %d %s", stream, code, raw)
		}
		if e.Path != "/echo/frames/latest" || e.Query != "size=small" || e.Stream != stream || e.ForwardedFor == "" {
			t.Fatalf("the service saw %+v, want path /echo/frames/latest, the query, the stream header and X-Forwarded-For", e)
		}
		a := pc.agentOf(e.Service)
		where[stream] = a
		byAgent[a] = append(byAgent[a], stream)
	}
	if len(byAgent["agent-1"]) == 0 || len(byAgent["agent-2"]) == 0 {
		t.Fatalf("40 streams all went to one agent: %v", byAgent)
	}
	for stream, a := range where {
		for range 3 {
			_, e, _ := pc.call(t, http.MethodPost, "/api/x", stream, strings.NewReader("hello"))
			if pc.agentOf(e.Service) != a || e.BodyBytes != 5 || e.Method != http.MethodPost {
				t.Fatalf("a later POST for %s reached %+v, want agent %s's service with the 5-byte body", stream, e, a)
			}
		}
		_, e, raw := pc.call(t, http.MethodGet, "/cams/"+stream+"/info", "", nil)
		if pc.agentOf(e.Service) != a || e.Path != "/echo/"+stream+"/info" {
			t.Fatalf("the stream named in the path went to %+v (%s), want agent %s", e, raw, a)
		}
		if !pc.svc[a].hadHook(t, "add", stream) {
			t.Fatalf("the service on %s has no add hook for %s: %v", a, stream, pc.svc[a].hooks(t))
		}
		if got := pc.websocketEcho(t, stream, "ping"); got != pc.svc[a].name+": ping" {
			t.Fatalf("a WebSocket for %s echoed %q, want %q from agent %s's service", stream, got, pc.svc[a].name+": ping", a)
		}
	}
}

// websocketEcho opens a WebSocket through the gateway for stream, sends msg
// and returns the answer.
func (pc *proxyCluster) websocketEcho(t *testing.T, stream, msg string) string {
	t.Helper()
	cfg, err := websocket.NewConfig("ws"+strings.TrimPrefix(pc.base, "http")+"/api/ws", pc.base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header.Set("X-Stream-Id", stream)
	c, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("WebSocket through the gateway: %v", err)
	}
	defer c.Close()
	if err := websocket.Message.Send(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got string
	if err := websocket.Message.Receive(c, &got); err != nil {
		t.Fatalf("WebSocket answer: %v", err)
	}
	return got
}

// gRPC through the gateway: a unary call reaches the health service of the
// stream's agent, a status code other than OK comes back intact, and a
// server-streaming call delivers its messages and ends by its deadline.
func TestGRPCCallsThroughTheGatewayKeepStatusesStreamsAndDeadlines(t *testing.T) {
	pc := startProxyCluster(t)
	u, _ := url.Parse(pc.base)
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	// Find the agent of a stream over HTTP, then ask its health service.
	_, e, raw := pc.call(t, http.MethodGet, "/api/who", "grpc-cam", nil)
	mine := e.Service
	if mine == "" {
		t.Fatalf("no service answered for grpc-cam: %s", raw)
	}
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 10*time.Second), "x-stream-id", "grpc-cam")
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: mine})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(%s) through the gateway = %v, %v; want SERVING from the stream's agent", mine, resp, err)
	}
	other := "svc-agent-1"
	if mine == other {
		other = "svc-agent-2"
	}
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: other}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check(%s) on the other agent's name = %v; want NotFound from the stream's agent", other, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	w, err := client.Watch(wctx, &healthpb.HealthCheckRequest{Service: mine})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch's first message = %v, %v", first, err)
	}
	// The stream ends at its deadline: the client's own timer says
	// DeadlineExceeded, or the service, whose copy of the deadline ran out at
	// about the same moment, ended it first (grpc-go's health service answers
	// a Watch whose context is done with Canceled).
	_, err = w.Recv()
	byService := status.Code(err) == codes.Canceled && strings.Contains(status.Convert(err).Message(), "Stream has ended")
	if status.Code(err) != codes.DeadlineExceeded && !byService {
		t.Fatalf("Watch after its deadline = %v, want DeadlineExceeded", err)
	}
	// The deadline reached the service through both hops.
	var dls []int64
	_, body := get(t, "http://"+pc.svc[strings.TrimPrefix(mine, "svc-")].http+"/grpc-deadlines")
	if err := json.Unmarshal([]byte(body), &dls); err != nil || len(dls) == 0 {
		t.Fatalf("the service recorded no streaming call: %v %s", err, body)
	}
	if left := dls[len(dls)-1]; left <= 0 || left > 700 {
		t.Fatalf("the Watch reached the service with %d ms left (-1: no deadline), want the client's 700 ms less the trip", left)
	}
	// Without a stream id the gateway refuses the call itself.
	if _, err := client.Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{Service: mine}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a gRPC call naming no stream = %v, want the gateway's InvalidArgument", err)
	}
}

// Calls the gateway cannot or must not forward get a problem answer that
// names the route and the stream, and disturb nothing else.
func TestProxyRefusesBadCallsWithProblemsAndKeepsServing(t *testing.T) {
	pc := startProxyCluster(t)
	problemOf := func(code int, raw string, want int, kind string) {
		t.Helper()
		if code != want || !strings.HasPrefix(raw, "application/problem+json") || !strings.Contains(raw, kind) {
			t.Fatalf("answer %d %s, want %d problem %s", code, raw, want, kind)
		}
	}
	code, _, raw := pc.call(t, http.MethodGet, "/api/x", "", nil)
	problemOf(code, raw, http.StatusBadRequest, "bad-stream-id")
	code, _, raw = pc.call(t, http.MethodGet, "/api/x", "../etc", nil)
	problemOf(code, raw, http.StatusBadRequest, "bad-stream-id")
	code, _, raw = pc.call(t, http.MethodGet, "/nowhere/x", "cam-1", nil)
	problemOf(code, raw, http.StatusNotFound, "no-route")
	code, _, raw = pc.call(t, http.MethodPost, "/small/x", "cam-1", strings.NewReader(strings.Repeat("x", 200)))
	problemOf(code, raw, http.StatusRequestEntityTooLarge, "body-too-large")
	// The same body with no length given is cut at the limit as it streams.
	code, _, raw = pc.call(t, http.MethodPost, "/small/x", "cam-1", io.MultiReader(strings.NewReader(strings.Repeat("x", 200))))
	problemOf(code, raw, http.StatusRequestEntityTooLarge, "body-too-large")

	svc := func(stream string) *testService {
		_, e, _ := pc.call(t, http.MethodGet, "/api/who", stream, nil)
		return pc.svc[pc.agentOf(e.Service)]
	}
	s := svc("cam-1")
	before := cancelledCount(t, s)
	// /hang never ends by itself: only the route's 1 s timeout ends the call
	// (the client's own 30 s is the test's guard), and the service sees it
	// cancelled. Its header went out at once, so the call ends mid-body.
	req, _ := http.NewRequest(http.MethodGet, pc.base+"/slow/", nil)
	req.Header.Set("X-Stream-Id", "cam-1")
	if resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req); err != nil {
		t.Fatalf("a hanging service behind a 1 s route timeout: %v", err)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
			t.Fatalf("reading the hanging call's body ended with %v, want the gateway cutting it", err)
		}
	}
	waitCancelled(t, s, before+1)

	// A service that answers nothing at all, not even a status: the gateway
	// answers 504 itself when the route's timeout passes, and the service's
	// call is cancelled.
	req, _ = http.NewRequest(http.MethodGet, pc.base+"/silent/", nil)
	req.Header.Set("X-Stream-Id", "cam-1")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("a silent service behind a 1 s route timeout: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	problemOf(resp.StatusCode, resp.Header.Get("Content-Type")+" "+string(b), http.StatusGatewayTimeout, "timeout")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, n := get(t, "http://"+s.http+"/holding"); n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the silent service's call was not cancelled after the gateway's 504")
		}
	}

	// A client that goes away mid-call cancels the service's call.
	before = cancelledCount(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, pc.base+"/open/", nil)
	req.Header.Set("X-Stream-Id", "cam-1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	waitCancelled(t, s, before+1)

	code, e, raw := pc.call(t, http.MethodGet, "/api/still", "cam-1", nil)
	if code != http.StatusOK || e.Path != "/echo/still" {
		t.Fatalf("after the bad calls, a good one = %d %s", code, raw)
	}
}

func cancelledCount(t *testing.T, s *testService) int {
	t.Helper()
	_, body := get(t, "http://"+s.http+"/cancelled")
	var n int
	fmt.Sscan(body, &n)
	return n
}

func waitCancelled(t *testing.T, s *testService, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for cancelledCount(t, s) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the service saw %d cancelled calls, want %d", cancelledCount(t, s), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// When the agent that has a stream is killed, calls for the stream go to the
// other agent at once — placed anew there — and its service gets the add hook.
func TestProxiedCallsMoveToAnotherAgentWhenTheirsIsKilled(t *testing.T) {
	pc := startProxyCluster(t)
	_, e, raw := pc.call(t, http.MethodGet, "/api/who", "moving-cam", nil)
	victim := pc.agentOf(e.Service)
	if victim == "" {
		t.Fatalf("no service answered: %s", raw)
	}
	survivor := "agent-1"
	if victim == survivor {
		survivor = "agent-2"
	}
	if err := syscall.Kill(pc.agents[victim].cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var last string
	for time.Since(killed) < 20*time.Second {
		code, e, raw := pc.call(t, http.MethodGet, "/api/who", "moving-cam", nil)
		last = fmt.Sprintf("%d %s", code, raw)
		if code == http.StatusOK && pc.agentOf(e.Service) == survivor {
			t.Logf("calls reached %s %s after %s was killed", survivor, time.Since(killed), victim)
			if !pc.svc[survivor].hadHook(t, "add", "moving-cam") {
				t.Fatalf("%s's service had no add hook for the moved stream", survivor)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("calls did not move to %s within 20 s; last answer %s", survivor, last)
}

// A stream whose media is live goes, for its proxied calls, to the agent that
// carries the media — so the service there can read it — and that agent's
// service heard of it through the add hook, with its node.
func TestProxiedCallsForALiveStreamReachTheAgentCarryingItsMedia(t *testing.T) {
	pc := startProxyCluster(t)
	for i := range 6 { // streams on either agent: the route policy spreads them
		stream := fmt.Sprintf("live-%d", i)
		ctx, stop := context.WithCancel(ctxT(t, 60*time.Second))
		view := liveStream(t, ctx, pc.base, stream)
		_, body := get(t, pc.base+"/v1/streams/"+stream)
		var sv struct{ Agent string }
		_ = json.Unmarshal([]byte(body), &sv)
		code, e, raw := pc.call(t, http.MethodGet, "/api/who", stream, nil)
		if code != http.StatusOK || pc.agentOf(e.Service) != sv.Agent {
			t.Fatalf("a call for live %s reached %d %s; its media is on %q", stream, code, raw, sv.Agent)
		}
		var media map[string]any
		for _, h := range pc.svc[sv.Agent].hooks(t) {
			if h["hook"] == "add" && h["stream"] == stream {
				media = h
			}
		}
		if media["reason"] != "media" || media["node"] == "" {
			t.Fatalf("the add hook for %s on %s = %v, want reason media with its node", stream, sv.Agent, media)
		}
		view.Close()
		stop() // the publisher's sending ends with ctx; its session closes at cleanup
	}
}
