package services

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
)

// tunnelAgent serves s's tunnels as the agent API's server does, and dials
// them as a gateway does.
type tunnelAgent struct {
	addr   string
	client *tls.Config
}

func serveTunnels(t *testing.T, s *Proxy) *tunnelAgent {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := ca.Issue("agent-1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := ca.Issue("gw-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:      http.NotFoundHandler(),
		TLSConfig:    agent.ServerTLS("h2", "http/1.1", wire.ALPNTunnel),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){wire.ALPNTunnel: s.ServeTunnel},
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return &tunnelAgent{addr: ln.Addr().String(), client: gw.ClientTLS(wire.ALPNTunnel)}
}

// open opens a tunnel and returns the agent's answer and, on 200, the tunnel.
func (a *tunnelAgent) open(t *testing.T, line string) (string, *tls.Conn) {
	t.Helper()
	c, err := tls.Dial("tcp", a.addr, a.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	ans, err := wire.ReadTunnelLine(c)
	if err != nil {
		t.Fatalf("open %q: no answer: %v", line, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return strings.TrimSuffix(string(ans), "\n"), c
}

// get makes an HTTP/1.1 call through an open tunnel.
func get(t *testing.T, c *tls.Conn, br *bufio.Reader, path string) (string, error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: svc\r\n\r\n", path); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func echoService(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "echo "+r.URL.Path) }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// A tunnel for a stream held here carries HTTP to the service, both ways and
// for several calls; the agent itself reads no HTTP of it.
func TestATunnelForAStreamHereReachesTheService(t *testing.T) {
	s, _ := newTestServices(t, time.Minute, map[string]bool{"live-1": true}, "echo", echoService(t))
	a := serveTunnels(t, s)
	s.hold("held-1")
	for _, stream := range []string{"held-1", "live-1"} {
		ans, c := a.open(t, "echo "+stream+" h1\n")
		if ans != "200 ok" {
			t.Fatalf("open for %s answered %q, want 200 ok", stream, ans)
		}
		br := bufio.NewReader(c)
		for _, p := range []string{"/a", "/b/c"} {
			if body, err := get(t, c, br, p); err != nil || body != "echo "+p {
				t.Fatalf("GET %s through %s's tunnel = %q, %v", p, stream, body, err)
			}
		}
	}
}

// A tunnel the agent cannot serve is refused with the answer the gateway maps
// to its error: the stream is elsewhere (421, so the gateway looks again), no
// such service (404), a protocol the service does not speak (505 with the one
// it does), a service that is down (502), an open line that is not one (400).
func TestTunnelsTheAgentCannotServeAreRefusedSayingWhy(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()
	s, _ := newTestServices(t, time.Minute, map[string]bool{"live-1": true},
		"h1only", "http://"+echoService(t), "h2only", "h2c://"+echoService(t), "down", downAddr)
	a := serveTunnels(t, s)
	for _, c := range []struct{ line, want string }{
		{"default elsewhere h1\n", "421 stream-not-here"},
		{"nope live-1 h1\n", "404 no-service"},
		{"h1only live-1 h2c\n", "505 h1"},
		{"h2only live-1 h1\n", "505 h2c"},
		{"down live-1 h1\n", "502 service-down"},
		{"GET / HTTP/1.1\r\n", "400 bad-open"},
		{"default ../etc h1\n", "400 bad-open"},
	} {
		if ans, _ := a.open(t, c.line); ans != c.want {
			t.Fatalf("open %q answered %q, want %q", c.line, ans, c.want)
		}
	}
	s.mu.Lock()
	left := len(s.tunnels)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d streams still have tunnels after every open was refused", left)
	}
}

// closedSoon reports whether the agent ended the tunnel: a read returns
// an error (its end closed) within a few seconds, not a timeout.
func closedSoon(c *tls.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Traffic on a held stream's tunnel keeps the stream held past its idle time;
// once the traffic stops and the idle time passes, the stream leaves and its
// tunnel is closed, so the gateway's next call asks again.
func TestTrafficKeepsAHeldStreamAndItsTunnelEndsWhenTheStreamGoes(t *testing.T) {
	const idle = 300 * time.Millisecond
	s, rec := newTestServices(t, idle, nil, "echo", echoService(t))
	a := serveTunnels(t, s)
	s.hold("cam-1")
	ans, c := a.open(t, "echo cam-1 h1\n")
	if ans != "200 ok" {
		t.Fatalf("open answered %q", ans)
	}
	br := bufio.NewReader(c)
	for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(idle / 6) {
		if _, err := get(t, c, br, "/x"); err != nil {
			t.Fatal(err)
		}
		s.expire()
	}
	if _, ok := s.here("cam-1", false); !ok {
		t.Fatal("a stream whose tunnel carried calls all along went idle")
	}
	time.Sleep(idle + idle/2)
	s.expire()
	if _, ok := s.here("cam-1", false); ok {
		t.Fatal("a stream with no traffic for longer than the idle time is still here")
	}
	if !closedSoon(c) {
		t.Fatal("the tunnel of a stream that left is still open")
	}
	s.callHooks(t.Context())
	rec.wait(t, "add cam-1 proxy", "remove cam-1 idle")
}

// When a stream's media ends here (and no call holds it), its tunnels close.
func TestATunnelEndsWhenItsStreamsMediaEnds(t *testing.T) {
	live := map[string]bool{"live-1": true}
	s, _ := newTestServices(t, time.Minute, live, "echo", echoService(t))
	a := serveTunnels(t, s)
	ans, c := a.open(t, "echo live-1 h1\n")
	if ans != "200 ok" {
		t.Fatalf("open answered %q", ans)
	}
	liveMu.Lock()
	delete(live, "live-1")
	liveMu.Unlock()
	s.StreamChanged(wire.StreamInfo{Stream: "live-1"}, false)
	if !closedSoon(c) {
		t.Fatal("the tunnel of a stream whose media ended is still open")
	}
}

// When the agent stops, its tunnels close, no goroutine of theirs is left,
// and new ones are refused.
func TestStoppingTheAgentClosesItsTunnels(t *testing.T) {
	s, _ := newTestServices(t, time.Minute, nil, "echo", echoService(t))
	a := serveTunnels(t, s)
	s.hold("cam-1")
	before := runtime.NumGoroutine()
	var conns []*tls.Conn
	for range 3 {
		ans, c := a.open(t, "echo cam-1 h1\n")
		if ans != "200 ok" {
			t.Fatalf("open answered %q", ans)
		}
		if _, err := get(t, c, bufio.NewReader(c), "/x"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	cancel()
	<-done
	for _, c := range conns {
		if !closedSoon(c) {
			t.Fatal("a tunnel is still open after the agent stopped")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the tunnels ended, %d before they opened", runtime.NumGoroutine(), before)
		}
	}
	if ans, _ := a.open(t, "echo cam-1 h1\n"); ans != "503 shutting-down" {
		t.Fatalf("an open after the stop answered %q, want 503 shutting-down", ans)
	}
}
