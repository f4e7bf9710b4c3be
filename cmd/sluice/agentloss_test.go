package main

import (
	"encoding/json"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/sluicegw/sluice/internal/freeport"
)

// TestWhenTheAgentCarryingAStreamDiesTheGatewayReplacesItOnAnotherAgent kills
// (SIGKILL) the agent that carries a live stream, with its node; the gateway must
// re-place the stream on the other agent and the viewer must get media again on
// the same WebRTC session, with neither browser reconnecting.
func TestWhenTheAgentCarryingAStreamDiesTheGatewayReplacesItOnAnotherAgent(t *testing.T) {
	first, bases := startCluster(t, 1)
	// first.cmd.Args is [sluice agent --tls-dir DIR --tls-name agent-1 --bind SERF …].
	dir := first.cmd.Args[3]
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-2", "--host", "127.0.0.1")
	second := start(t, "agent", "--tls-dir", dir, "--tls-name", "agent-2", "--bind", freeport.Loopback(t), "--api", "127.0.0.1:0",
		"--join", first.cmd.Args[7])
	second.waitLine(regexp.MustCompile(`sluice agent agent-2 is ready`), 30*time.Second)
	base := bases[0]
	waitAgents := func(n int) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, body := get(t, base+"/readyz")
			var r struct{ Agents int }
			if json.Unmarshal([]byte(body), &r) == nil && r.Agents == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway does not see %d agents: %s", n, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitAgents(2)

	ctx := ctxT(t, 90*time.Second)
	view := liveStream(t, ctx, base, "agent-loss")
	_, body := get(t, base+"/v1/streams/agent-loss")
	var sv struct{ Agent string }
	_ = json.Unmarshal([]byte(body), &sv)
	victim, other := first, "agent-2"
	if sv.Agent == "agent-2" {
		victim, other = second, "agent-1"
	}
	_ = syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL)
	killed := time.Now()
	// Packets already in flight from the dead node arrive within milliseconds;
	// after 100 ms whatever the viewer receives came through the replacement.
	time.Sleep(100 * time.Millisecond)
	waitPackets(t, view, 20, 20*time.Second)
	t.Logf("media again %s after the agent carrying the stream was killed", time.Since(killed))
	if st := view.PC.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Fatalf("the viewer's session is %s", st)
	}
	_, body = get(t, base+"/v1/streams/agent-loss")
	_ = json.Unmarshal([]byte(body), &sv)
	if sv.Agent != other {
		t.Fatalf("the stream is on %q, want the surviving %s: %s", sv.Agent, other, body)
	}
}
