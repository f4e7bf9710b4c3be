package agent

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/procstat"
	"github.com/sluicegw/sluice/internal/wire"
)

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

func TestANodesDeathIsPublishedOnTheEventStreamAtOnce(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {}})
	waitFor(t, "the warm node", 10*time.Second, func() bool {
		ns := nodesOf(a)
		return len(ns) == 1 && ns[0].State == nodeRunning
	})
	r := open(t, a, "cam", wire.KindPublish)
	events, stop := a.Manager().Watch()
	defer stop()
	info, _ := a.Manager().QueryNode(r.Node)
	_ = syscall.Kill(info.PID, syscall.SIGKILL)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.T == wire.EventNodeDown && ev.Node == r.Node {
				return
			}
		case <-timeout:
			t.Fatalf("no node-down event for %s within 5s of its SIGKILL", r.Node)
		}
	}
}

func TestNoMoreThanRespawnableNodesRestartAtOnceWhenSeveralAreKilledTogether(t *testing.T) {
	// Each node takes 300 ms to be ready, so replacements started together
	// overlap unless the pool holds them back.
	t.Setenv("SLUICE_TEST_NODE_DELAY", "300ms")
	a := startAgent(t, map[string]Pool{"relay": {Concurrent: 3, WaitQueue: 1, Respawnable: 1, Warm: -1}}, func(c *Config) {
		c.QueueTimeout = 10 * time.Second
	})
	var pids []int
	for _, s := range []string{"a", "b", "c"} {
		r := open(t, a, s, wire.KindPublish)
		info, _ := a.Manager().QueryNode(r.Node)
		pids = append(pids, info.PID)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	most := 0
	waitFor(t, "three replacements running", 20*time.Second, func() bool {
		running, starting := 0, 0
		for _, n := range nodesOf(a) {
			switch n.State {
			case nodeStarting:
				starting++
			case nodeRunning:
				if !slices.Contains(pids, n.PID) {
					running++
				}
			}
		}
		most = max(most, starting)
		return running == 3
	})
	if most != 1 {
		t.Fatalf("%d nodes were starting at once after three died; want respawnable = 1", most)
	}
	for _, s := range []string{"a", "b", "c"} {
		if si, err := a.Manager().stream(s); err != nil || si.Node == "" {
			t.Errorf("stream %s after the restarts: %+v %v; want it on a replacement", s, si, err)
		}
	}
}

func TestANodePastMaxageIsRecycledNewStreamsGoElsewhereAndItStopsWhenItsStreamEnds(t *testing.T) {
	a := startAgent(t, map[string]Pool{"relay": {Concurrent: 2, Keepalive: Keepalive{MaxAge: 500 * time.Millisecond}}})
	old := open(t, a, "old", wire.KindPublish)
	waitFor(t, "the node to be recycled at maxage", 10*time.Second, func() bool {
		n, err := a.Manager().QueryNode(old.Node)
		return err == nil && n.State == nodeRecycling
	})
	if fresh := open(t, a, "fresh", wire.KindPublish); fresh.Node == old.Node {
		t.Fatalf("a new stream went to the node past maxage %s", old.Node)
	}
	if err := a.Manager().CloseSession(old.Session); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the recycled node to stop once its stream ended", 10*time.Second, func() bool {
		_, err := a.Manager().QueryNode(old.Node)
		return errors.Is(err, ErrNoSuchNode)
	})
}
