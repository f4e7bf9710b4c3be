package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
)

// agentAPI is an agent's API as the gateway calls it, over mutual TLS: it
// carries the streams in live and records every request it is sent.
type agentAPI struct {
	id     string
	srv    *httptest.Server
	live   map[string]bool
	tags   map[string]string // member tags over the defaults
	refuse string            // the problem type every open is refused with (queue-full, …)

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
	case r.Method == http.MethodPost && r.URL.Path == wire.PathSessions && a.refuse != "":
		problem.Write(w, http.StatusServiceUnavailable, a.refuse, "Refused", "refused by "+a.id)
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
		tags := map[string]string{wire.TagRole: wire.RoleAgent, wire.TagID: a.id, wire.TagAPI: a.srv.Listener.Addr().String(),
			wire.TagPurposes: "relay", wire.TagCapacity: "10", wire.TagLoad: "0"}
		maps.Copy(tags, a.tags)
		m, err := cluster.Start(ctx, cluster.Config{Name: a.id, Bind: freeport.Loopback(t), Dev: true, Join: []string{gw.Addr()}, Tags: tags}, quiet)
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

// A request that waited out one agent's queue is not sent to wait again in the
// next: the operator's queueTimeout is the whole wait. A full queue moves on.
func TestAQueueTimeoutEndsThePlacementAndAFullQueueMovesOnToTheNextAgent(t *testing.T) {
	timedOut, full, free, next := &agentAPI{id: "a", refuse: "queue-timeout"}, &agentAPI{id: "b", refuse: "queue-full"}, &agentAPI{id: "c"}, &agentAPI{id: "d"}
	core := clusterOf(t, rankedPolicy{"b", "c"}, full, free)
	p, err := core.Publish(context.Background(), PublishRequest{Stream: "s1", Protocol: "whip", Tracks: 1})
	if err != nil || p.link.placement().Agent != "c" || !slices.Contains(full.requests(), "POST "+wire.PathSessions) {
		t.Fatalf("with b, ranked first, full: %v; want the stream on c", err)
	}
	p.Abort()

	core = clusterOf(t, rankedPolicy{"a", "d"}, timedOut, next)
	_, err = core.Publish(context.Background(), PublishRequest{Stream: "s2", Protocol: "whip", Tracks: 1})
	var se *Error
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable || se.Kind != "queue-timeout" {
		t.Fatalf("after a's queue timed out: %v; want 503 queue-timeout", err)
	}
	if slices.Contains(next.requests(), "POST "+wire.PathSessions) {
		t.Fatalf("the request that timed out in a's queue was sent to wait in d's too")
	}
}

// rankedPolicy offers these agents, in this order.
type rankedPolicy []string

func (rankedPolicy) Throttle(context.Context, *ThrottleInput) (ThrottleOutput, error) {
	return ThrottleOutput{Action: Admit}, nil
}

func (p rankedPolicy) Route(context.Context, *RouteInput) (RouteOutput, error) {
	return RouteOutput{Agents: p}, nil
}

// The throttle's figures are M2's: the process limit and the wait queues of the
// agents a stream may go to, not their stream capacities.
func TestThrottleFiguresAreTheProcessLimitAndQueuesOfThePlaceableAgents(t *testing.T) {
	core := clusterOf(t, nil,
		&agentAPI{id: "a", tags: map[string]string{wire.TagConcurrent: "2", wire.TagQueue: "3", wire.TagLoad: "8", wire.TagCapacity: "8"}},
		&agentAPI{id: "b", tags: map[string]string{wire.TagConcurrent: "4", wire.TagQueue: "1", wire.TagCapacity: "400"}},
		&agentAPI{id: "draining", tags: map[string]string{wire.TagConcurrent: "8", wire.TagQueue: "5", wire.TagState: wire.StateDraining}},
		&agentAPI{id: "record-only", tags: map[string]string{wire.TagConcurrent: "16", wire.TagQueue: "7", wire.TagPurposes: "record"}},
	)
	got := core.poolFigures()
	want := []PoolFigures{{Purpose: "relay", Concurrent: 6, Active: 8, Queued: 4}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("figures %+v; want %+v", got, want)
	}
}

func TestADrainingCoreRefusesNewPublicationsAndSubscriptionsWith503(t *testing.T) {
	core := clusterOf(t, nil, &agentAPI{id: "a", live: map[string]bool{"on-a": true}})
	core.Drain()
	_, errPub := core.Publish(context.Background(), PublishRequest{Stream: "new", Protocol: "moq", Tracks: 1})
	_, errSub := core.Subscribe(context.Background(), "on-a")
	for _, err := range []error{errPub, errSub} {
		var se *Error
		if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable || se.Kind != "draining" {
			t.Errorf("a new session on a draining core: %v; want 503 draining", err)
		}
	}
}
