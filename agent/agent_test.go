package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicegw/sluice/agent/node"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
)

// The test binary doubles as the node program: an agent under test starts it with
// SLUICE_TEST_NODE=1 and --purpose P, and it runs the real node main. (Without
// --purpose it is a test process, such as a fuzzing worker, that inherited the
// variable.)
func TestMain(m *testing.M) {
	purpose := ""
	for i, a := range os.Args {
		if a == "--purpose" && i+1 < len(os.Args) {
			purpose = os.Args[i+1]
		}
	}
	if os.Getenv("SLUICE_TEST_NODE") == "1" && purpose != "" {
		if d, err := time.ParseDuration(os.Getenv("SLUICE_TEST_NODE_DELAY")); err == nil {
			time.Sleep(d) // a node slow to start, so that restarts overlap
		}
		if err := node.Run(context.Background(), purpose, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Setenv("SLUICE_TEST_NODE", "1") // inherited by the nodes the tests spawn
	os.Exit(m.Run())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startAgent runs a real agent (cluster member, API, node processes) with pools.
func startAgent(t testing.TB, pools map[string]Pool, mut ...func(*Config)) *Agent {
	t.Helper()
	ca, _ := pki.NewCA("test")
	id, _ := ca.Issue("agent-t", []string{"127.0.0.1"})
	c, err := cluster.Start(context.Background(), cluster.Config{Name: "agent-t", Bind: freeport.Loopback(t), Dev: true, TagInterval: 50 * time.Millisecond,
		Tags: map[string]string{wire.TagRole: wire.RoleAgent}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "agent-t", API: "127.0.0.1:0", Pools: pools, NodeCommand: []string{os.Args[0], "-test.run=^$"}, DrainTimeout: time.Second, QueueTimeout: 2 * time.Second}
	for _, f := range mut {
		f(&cfg)
	}
	a, err := New(cfg, c, id, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	// Serving: the agent's tags are out (Run has started the node manager).
	waitFor(t, "the agent to serve", 10*time.Second, func() bool { return c.Tags()[wire.TagState] == wire.StateServing })
	return a
}

func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, limit)
	return 0
}

func open(t testing.TB, a *Agent, stream, kind string) wire.OpenResponse {
	t.Helper()
	r, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: stream, Kind: kind, Gateway: "gw"})
	if err != nil {
		t.Fatalf("open %s %s: %v", kind, stream, err)
	}
	return r
}

func nodesOf(a *Agent) []wire.NodeInfo { return a.Status().Nodes }

func TestInspectionWritesProcessTableSnapshotsAndKeepsTheLastRetention(t *testing.T) {
	dir := t.TempDir()
	startAgent(t, map[string]Pool{"relay": {}}, func(c *Config) {
		c.Inspection = Inspection{Enable: true, Retention: 2, Schedule: "* * * * * *", Dir: dir}
	})
	var files []string
	waitFor(t, "three snapshots' worth of time", 10*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "process-*.json"))
		return len(files) == 2
	})
	time.Sleep(2500 * time.Millisecond) // more snapshots come; only the last 2 stay
	files, _ = filepath.Glob(filepath.Join(dir, "process-*.json"))
	if len(files) != 2 {
		t.Fatalf("%d snapshots kept, want retention 2", len(files))
	}
	b, _ := os.ReadFile(files[1])
	var st wire.Status
	if err := json.Unmarshal(b, &st); err != nil || st.Agent != "agent-t" || len(st.Nodes) == 0 {
		t.Fatalf("snapshot %s: %v %+v", files[1], err, st)
	}
}

func TestSIGTERMDrainsTagsDrainingTakesNoNewStreamsAndWaitsForLiveOnes(t *testing.T) {
	ca, _ := pki.NewCA("test")
	id, _ := ca.Issue("agent-d", []string{"127.0.0.1"})
	c, err := cluster.Start(context.Background(), cluster.Config{Name: "agent-d", Bind: freeport.Loopback(t), Dev: true, TagInterval: 50 * time.Millisecond}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := New(Config{ID: "agent-d", API: "127.0.0.1:0", NodeCommand: []string{os.Args[0], "-test.run=^$"}, DrainTimeout: 10 * time.Second}, c, id, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	waitFor(t, "serving", 10*time.Second, func() bool { return c.Tags()[wire.TagState] == wire.StateServing })
	live := open(t, a, "live", wire.KindPublish)

	cancel() // what SIGTERM does in `sluice agent`
	waitFor(t, "the draining tag", 5*time.Second, func() bool { return c.Tags()[wire.TagState] == wire.StateDraining })
	if _, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "new", Kind: wire.KindPublish}); !errors.Is(err, ErrDraining) {
		t.Fatalf("a new stream while draining: %v", err)
	}
	if again := open(t, a, "live", wire.KindPlay); again.Node != live.Node {
		t.Fatal("the live stream lost its node while draining")
	}
	select {
	case <-done:
		t.Fatal("Run returned while a stream was live and the drain deadline had not passed")
	case <-time.After(500 * time.Millisecond):
	}
	_ = a.Manager().CloseSession(live.Session) // the stream ends
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last stream ended")
	}
	if n := len(a.Status().Nodes); n != 0 {
		t.Fatalf("%d nodes left after the drain", n)
	}
}
