package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
)

// agentAPI is an agent's API as the gateway calls it, over mutual TLS: it
// carries the streams in live and records every request it is sent.
type agentAPI struct {
	id   string
	srv  *httptest.Server
	live map[string]bool

	mu   sync.Mutex
	reqs []string
}

func (a *agentAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.reqs = append(a.reqs, r.Method+" "+r.URL.Path)
	a.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/agent/v1/streams/"):
		id := strings.TrimPrefix(r.URL.Path, "/agent/v1/streams/")
		if !a.live[id] {
			http.Error(w, `{"detail":"not here"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(wire.StreamInfo{Stream: id, Agent: a.id, Node: "n1", Media: "127.0.0.1:9"})
	case r.Method == http.MethodPost && r.URL.Path == wire.PathSessions:
		var req wire.OpenRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		_ = json.NewEncoder(w).Encode(wire.OpenResponse{Session: "s-" + a.id, Agent: a.id, Node: "n1", Media: "127.0.0.1:9", Epoch: 1})
	default:
		http.NotFound(w, r)
	}
}

func (a *agentAPI) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.reqs...)
}

// countingPolicy offers the candidates in order and counts its decisions.
type countingPolicy struct {
	eligiblePolicy
	mu     sync.Mutex
	routes int
}

func (p *countingPolicy) Route(ctx context.Context, in *RouteInput) (RouteOutput, error) {
	p.mu.Lock()
	p.routes++
	p.mu.Unlock()
	return p.eligiblePolicy.Route(ctx, in)
}

// clusterOf starts a real one-gateway serf cluster with an agent member for each
// agentAPI, and a core on it.
func clusterOf(t *testing.T, pol Policy, agents ...*agentAPI) *Core {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	gwID, err := ca.Issue("gw", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	gw, err := cluster.Start(ctx, cluster.Config{Name: "gw", Bind: freeport.Loopback(t), Dev: true, Tags: map[string]string{wire.TagRole: wire.RoleGateway}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	for _, a := range agents {
		id, err := ca.Issue(a.id, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		a.srv = httptest.NewUnstartedServer(a)
		a.srv.TLS = id.ServerTLS()
		a.srv.StartTLS()
		t.Cleanup(a.srv.Close)
		m, err := cluster.Start(ctx, cluster.Config{Name: a.id, Bind: freeport.Loopback(t), Dev: true, Join: []string{gw.Addr()},
			Tags: map[string]string{wire.TagRole: wire.RoleAgent, wire.TagID: a.id, wire.TagAPI: a.srv.Listener.Addr().String(),
				wire.TagPurposes: "relay", wire.TagCapacity: "10", wire.TagLoad: "0"}}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
	}
	core, err := New(Config{ID: "gw"}, gw, gwID, pol, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(core.Close)
	deadline := time.Now().Add(10 * time.Second)
	for len(core.AgentList()) < len(agents) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway sees %d of %d agents", len(core.AgentList()), len(agents))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return core
}

// Finding out whether a stream is live opens nothing anywhere: each agent is
// asked its read-only stream query once, and the one that carries the stream is
// found.
func TestLookingUpAStreamAsksEachAgentOnceAndOpensNoSession(t *testing.T) {
	a, b, c := &agentAPI{id: "a"}, &agentAPI{id: "b", live: map[string]bool{"cam1": true}}, &agentAPI{id: "c"}
	core := clusterOf(t, nil, a, b, c)
	found, _, err := core.lookup(context.Background(), "cam1")
	if err != nil || found.ID != "b" {
		t.Fatalf("lookup of cam1 found %q, %v; want agent b", found.ID, err)
	}
	if _, _, err := core.lookup(context.Background(), "nobody"); !errors.Is(err, ErrNotLive) {
		t.Fatalf("lookup of a stream no agent carries: %v, want ErrNotLive", err)
	}
	for _, ag := range []*agentAPI{a, b, c} {
		for _, r := range ag.requests() {
			if !strings.HasPrefix(r, "GET /agent/v1/streams/") {
				t.Errorf("agent %s was sent %s by a lookup", ag.id, r)
			}
		}
		if n := len(ag.requests()); n < 1 || n > 2 {
			t.Errorf("agent %s was asked %d times for two lookups", ag.id, n)
		}
	}
}

// A publish asks the route policy once and opens one session, on the agent the
// policy ranked first; a stream live on another agent is refused with 409
// before the policy is asked.
func TestAPublishAsksTheRoutePolicyOnceAndRefusesAStreamLiveElsewhere(t *testing.T) {
	a, b := &agentAPI{id: "a"}, &agentAPI{id: "b", live: map[string]bool{"taken": true}}
	pol := &countingPolicy{}
	core := clusterOf(t, pol, a, b)
	p, err := core.Publish(context.Background(), PublishRequest{Stream: "cam1", Protocol: "whip", Client: "127.0.0.1", Tracks: 2})
	if err != nil {
		t.Fatal(err)
	}
	if pl := p.link.placement(); pl.Session == "" || pl.Agent == "" {
		t.Fatalf("placement %+v", pl)
	}
	if pol.routes != 1 {
		t.Errorf("the route policy was asked %d times for one publish", pol.routes)
	}
	opened := 0
	for _, ag := range []*agentAPI{a, b} {
		for _, r := range ag.requests() {
			if r == "POST "+wire.PathSessions {
				opened++
			}
		}
	}
	if opened != 1 {
		t.Errorf("%d sessions opened for one publish", opened)
	}
	p.Abort()

	_, err = core.Publish(context.Background(), PublishRequest{Stream: "taken", Protocol: "whip", Tracks: 1})
	var se *Error
	if !errors.As(err, &se) || se.Status != http.StatusConflict || se.Kind != "stream-busy" || !strings.Contains(se.Detail, "agent b") {
		t.Fatalf("publishing a stream live on agent b: %v", err)
	}
	if pol.routes != 1 {
		t.Errorf("the route policy was asked for a stream that is live elsewhere")
	}
}
