package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/agent/node"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procstat"
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
		if err := node.Run(context.Background(), purpose, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Setenv("SLUICE_TEST_NODE", "1") // inherited by the nodes the tests spawn
	os.Exit(m.Run())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAgent runs a real agent (cluster member, API, node processes) with pools.
func startAgent(t testing.TB, pools map[string]Pool, mut ...func(*Config)) *Agent {
	t.Helper()
	ca, _ := pki.NewCA("test")
	id, _ := ca.Issue("agent-t", []string{"127.0.0.1"})
	c, err := cluster.Start(context.Background(), cluster.Config{Name: "agent-t", Bind: freeAddr(t), Dev: true, TagInterval: 50 * time.Millisecond,
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

func TestNodesAreSpawnedReusedForAStreamAndRecycledOnRequest(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Concurrent: 2, WaitQueue: 2}})
	r1 := open(t, a, "s1", wire.KindPublish)
	if r1.Media == "" || r1.Node == "" {
		t.Fatalf("open = %+v", r1)
	}
	if again := open(t, a, "s1", wire.KindPlay); again.Node != r1.Node {
		t.Fatalf("play went to %s, the stream is on %s", again.Node, r1.Node)
	}
	r2 := open(t, a, "s2", wire.KindPublish)
	if r2.Node != r1.Node {
		t.Fatalf("the warm node has room for 2 streams, but s2 went to a new node")
	}
	r3 := open(t, a, "s3", wire.KindPublish) // node 1 is full (waitQueue 2): a second node
	if r3.Node == r1.Node {
		t.Fatal("s3 was put on a full node")
	}
	if n := len(nodesOf(a)); n != 2 {
		t.Fatalf("%d nodes, want 2", n)
	}
	if err := a.Manager().RecycleNode(r3.Node); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "s3 moves to a replacement node", 5*time.Second, func() bool {
		r, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "s3", Kind: wire.KindPlay})
		return err == nil && r.Node != r3.Node && r.Epoch > r3.Epoch
	})
}

func TestAKilledNodeIsReplacedAndItsStreamsMoveWithANewEpoch(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {}})
	r := open(t, a, "live", wire.KindPublish)
	info, _ := a.Manager().QueryNode(r.Node)
	_ = syscall.Kill(info.PID, syscall.SIGKILL)
	var again wire.OpenResponse
	took := waitFor(t, "a replacement node", 5*time.Second, func() bool {
		var err error
		again, err = a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "live", Kind: wire.KindPublish, Gateway: "gw"})
		return err == nil && again.Node != r.Node
	})
	t.Logf("replacement ready %s after SIGKILL", took)
	if again.Epoch <= r.Epoch || again.Media == r.Media {
		t.Fatalf("after replacement: %+v, before %+v", again, r)
	}
	if st := a.Status(); st.Summary.Respawns != 1 {
		t.Fatalf("respawns = %d, want 1", st.Summary.Respawns)
	}
}

func TestAHungNodeIsDetectedAndKilledWithin3500ms(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {}})
	r := open(t, a, "hung", wire.KindPublish)
	info, _ := a.Manager().QueryNode(r.Node)
	if err := syscall.Kill(info.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	defer syscall.Kill(info.PID, syscall.SIGKILL)
	for {
		s, err := procstat.Read(info.PID)
		if err != nil || s.State == 'Z' { // gone, or killed and not yet reaped
			break
		}
		if time.Since(stopped) > 3500*time.Millisecond {
			t.Fatalf("the SIGSTOPped node %d is still there after %s", info.PID, time.Since(stopped))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("hung node killed %s after SIGSTOP", time.Since(stopped))
}

func TestACrashLoopExhaustsTheBudgetAndMarksThePoolFailedVisibly(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Intensity: Intensity{MaxRestarts: 3, Period: time.Minute}}}, func(c *Config) {
		c.NodeCommand = []string{"/bin/sh", "-c", "exit 3", "crashing-node"}
	})
	waitFor(t, "the pool to be marked failed", 20*time.Second, func() bool {
		for _, p := range a.Status().Pools {
			if p.Purpose == "relay" && p.Failed {
				return strings.Contains(p.Reason, "intensity limit")
			}
		}
		return false
	})
	if tags := a.tags(wire.StateServing); tags[wire.TagFailed] != "relay" {
		t.Fatalf("failed tag = %q, want relay", tags[wire.TagFailed])
	}
	_, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "x", Kind: wire.KindPublish})
	if !errors.Is(err, ErrPoolFailed) {
		t.Fatalf("open on a failed pool: %v", err)
	}
}

func TestAMaxcountRecycleKeepsLiveStreamsUntilTimewait(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Keepalive: Keepalive{MaxCount: 2, TimeWait: 1500 * time.Millisecond}}})
	r1 := open(t, a, "a", wire.KindPublish)
	r2 := open(t, a, "b", wire.KindPublish) // the node has now served maxcount streams
	if r2.Node != r1.Node {
		t.Fatal("both streams should share the first node")
	}
	info, _ := a.Manager().QueryNode(r1.Node)
	if info.State != nodeRecycling {
		t.Fatalf("node state %s, want recycling after maxcount", info.State)
	}
	if r3 := open(t, a, "c", wire.KindPublish); r3.Node == r1.Node {
		t.Fatal("a recycling node took a new stream")
	}
	// Before timewait the live streams stay on the recycling node.
	time.Sleep(700 * time.Millisecond)
	if r := open(t, a, "a", wire.KindPlay); r.Node != r1.Node {
		t.Fatalf("stream a moved at %s, before the 1.5 s timewait", 700*time.Millisecond)
	}
	// After timewait the node is stopped and its streams move.
	waitFor(t, "the recycled node's streams to move after timewait", 5*time.Second, func() bool {
		r, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "a", Kind: wire.KindPlay})
		return err == nil && r.Node != r1.Node
	})
}

func TestANodeOverItsMemoryLimitIsReplaced(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Memory: "4m"}}) // a relay node's RSS is ~15 MB
	r := open(t, a, "fat", wire.KindPublish)
	waitFor(t, "the node over its memory limit to be replaced", 10*time.Second, func() bool {
		got, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: "fat", Kind: wire.KindPlay})
		return err == nil && got.Node != r.Node
	})
	if st := a.Status(); st.Summary.Respawns != 0 {
		t.Fatalf("a memory recycle counted as %d crash respawns", st.Summary.Respawns)
	}
}

func TestTheWaitQueueServesInOrderAndTimesOutWithAClearError(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Concurrent: 1, WaitQueue: 1}}, func(c *Config) { c.QueueTimeout = 3 * time.Second })
	first := open(t, a, "q0", wire.KindPublish)
	order := make(chan string, 2)
	for _, s := range []string{"q1", "q2"} {
		go func() {
			if _, err := a.Manager().Open(context.Background(), wire.OpenRequest{Stream: s, Kind: wire.KindPublish, Gateway: "gw"}); err == nil {
				order <- s
			} else {
				order <- s + ": " + err.Error()
			}
		}()
		waitFor(t, s+" queued", 2*time.Second, func() bool { return a.Status().Pools[0].Queued >= 1 })
		time.Sleep(50 * time.Millisecond)
	}
	if q := a.Status().Pools[0].Queued; q != 2 {
		t.Fatalf("queued = %d, want 2", q)
	}
	// Free the node: q1 (first in) gets it; q2 waits on and times out.
	if err := a.Manager().CloseSession(first.Session); err != nil {
		t.Fatal(err)
	}
	if got := <-order; got != "q1" {
		t.Fatalf("first served: %s, want q1", got)
	}
	got := <-order
	if !strings.Contains(got, "q2: ") || !strings.Contains(got, "queue timeout") && !strings.Contains(got, "busy for the whole queue") {
		t.Fatalf("q2: %s; want a queue timeout error", got)
	}
}

func TestSIGKILLOfTheAgentLeavesNoNodeBehind(t *testing.T) {
	// A child process runs a real agent; we kill it and look for its nodes.
	if os.Getenv("SLUICE_TEST_AGENT_CHILD") == "1" {
		a := startAgent(t, map[string]Pool{"relay": {Warm: 2, Concurrent: 2}})
		waitFor(t, "two nodes", 10*time.Second, func() bool { return len(nodesOf(a)) == 2 })
		os.Stdout.WriteString("READY\n")
		time.Sleep(time.Minute)
		return
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestSIGKILLOfTheAgentLeavesNoNodeBehind$")
	cmd.Env = append(os.Environ(), "SLUICE_TEST_AGENT_CHILD=1", "SLUICE_TEST_NODE=0")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(20 * time.Second)
	seen := ""
	for !strings.Contains(seen, "READY") && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		seen += string(buf[:n])
		if err != nil {
			break
		}
	}
	kids := procstat.Children(cmd.Process.Pid)
	if len(kids) < 2 {
		cmd.Process.Kill()
		t.Fatalf("agent child has %d node children (output %q)", len(kids), seen)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitFor(t, "every node to exit with its agent", 5*time.Second, func() bool {
		for _, k := range kids {
			if s, err := procstat.Read(k); err == nil && s.State != 'Z' {
				return false
			}
		}
		return true
	})
}

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
	c, err := cluster.Start(context.Background(), cluster.Config{Name: "agent-d", Bind: freeAddr(t), Dev: true, TagInterval: 50 * time.Millisecond}, quiet())
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
