package moq

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// fakeAgent is an agent's API as the gateway calls it over mutual TLS: it
// opens every session it is asked for on a node that is never there (so a
// Publication is placed, and counts what its Source writes, without media
// leaving the gateway) and carries no stream.
type fakeAgent struct {
	mu    sync.Mutex
	opens []wire.OpenRequest
}

func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/agent/v1/streams/"):
		http.Error(w, `{"detail":"not here"}`, http.StatusNotFound)
	case r.Method == http.MethodPost && r.URL.Path == wire.PathSessions:
		var req wire.OpenRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		a.mu.Lock()
		a.opens = append(a.opens, req)
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(wire.OpenResponse{Session: "s-" + req.Stream, Agent: "a", Node: "n1", Media: "127.0.0.1:9", Epoch: 1})
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testGateway is a real session core in a real one-gateway serf cluster with
// one (fake) agent, and a MoQ Server on it.
type testGateway struct {
	core  *session.Core
	srv   *Server
	set   *metrics.Set
	agent *fakeAgent
}

func startGateway(t *testing.T, mut ...func(*Config)) *testGateway {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	gwID, _ := ca.Issue("gw", []string{"127.0.0.1"})
	agID, _ := ca.Issue("a", []string{"127.0.0.1"})
	quiet := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	gw, err := cluster.Start(ctx, cluster.Config{Name: "gw", Bind: freeAddr(t), Dev: true, Tags: map[string]string{wire.TagRole: wire.RoleGateway}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	fa := &fakeAgent{}
	api := httptest.NewUnstartedServer(fa)
	api.TLS = agID.ServerTLS()
	api.StartTLS()
	t.Cleanup(api.Close)
	m, err := cluster.Start(ctx, cluster.Config{Name: "a", Bind: freeAddr(t), Dev: true, Join: []string{gw.Addr()},
		Tags: map[string]string{wire.TagRole: wire.RoleAgent, wire.TagID: "a", wire.TagAPI: api.Listener.Addr().String(),
			wire.TagPurposes: "relay", wire.TagCapacity: "10", wire.TagLoad: "0"}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	set := metrics.NewSet()
	core, err := session.New(session.Config{ID: "gw"}, gw, gwID, nil, quiet, set)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(core.AgentList()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never saw the agent")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cfg := Config{Listen: "127.0.0.1:0", Metrics: set}
	for _, f := range mut {
		f(&cfg)
	}
	srv, err := New(cfg, core, quiet)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background()) }()
	t.Cleanup(func() {
		_ = srv.Close()
		core.Close()
	})
	return &testGateway{core: core, srv: srv, set: set, agent: fa}
}

func (g *testGateway) addr() string { return g.srv.Addr().String() }

// metric reads one series from the gateway's metrics set.
func (g *testGateway) metric(name string) string {
	var b strings.Builder
	g.set.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return strings.TrimPrefix(l, name+" ")
		}
	}
	return ""
}

// publisherOf waits until the core shows stream published over MoQ and returns
// its packet count.
func (g *testGateway) published(t *testing.T, stream string) *session.PublisherView {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if v := g.core.LocalStreams()[stream]; v != nil && v.Publisher != nil {
			return v.Publisher
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s is not published through the gateway", stream)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// vp8Opus is a catalog of one VP8 and one Opus track, as @moq/publish names them.
func vp8Opus() *hang.Catalog {
	return &hang.Catalog{
		Video: &hang.VideoSection{Renditions: map[string]hang.VideoConfig{"video/hd": {Codec: "vp8", CodedWidth: 640, CodedHeight: 360}}},
		Audio: &hang.AudioSection{Renditions: map[string]hang.AudioConfig{"audio/data": {Codec: "opus", SampleRate: 48000, NumberOfChannels: 2}}},
	}
}
