package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
)

// drainCluster runs an agent and two gateways as separate processes, each with
// the config doc, and returns them with the gateways' base URLs.
func drainCluster(t *testing.T, doc string) (agent *proc, gws []*proc, bases []string) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeConfig(t, doc)
	sluiceOK(t, "ca", "init", "--dir", dir)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-1", "--host", "127.0.0.1")
	agentSerf := freeport.Loopback(t)
	agent = start(t, "agent", "--config", cfg, "--tls-dir", dir, "--tls-name", "agent-1", "--bind", agentSerf, "--api", "127.0.0.1:0")
	agent.waitLine(regexp.MustCompile(`sluice agent agent-1 is ready`), 30*time.Second)
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("gw-%d", i)
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", name, "--host", "127.0.0.1")
		gw := start(t, "gateway", "--config", cfg, "--tls-dir", dir, "--tls-name", name, "--bind", freeport.Loopback(t), "--join", agentSerf,
			"--http", "127.0.0.1:0", "--ice-port", "-1")
		m := gw.waitLine(regexp.MustCompile(`ready on (http://\S+)/ `), 30*time.Second)
		waitReady(t, m[1])
		gws, bases = append(gws, gw), append(bases, m[1])
	}
	return agent, gws, bases
}

// member is a member of the cluster as base's /v1/cluster shows it.
func memberAt(t *testing.T, base, name string) (status, state string) {
	t.Helper()
	_, body := get(t, base+"/v1/cluster")
	var c struct {
		Members []struct {
			Name, Status string
			Tags         map[string]string
		} `json:"members"`
	}
	_ = json.Unmarshal([]byte(body), &c)
	for _, m := range c.Members {
		if m.Name == name {
			return m.Status, m.Tags["state"]
		}
	}
	return "", ""
}

// until polls cond every 50 ms for up to limit.
func until(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

func TestSIGTERMDrainsAGatewayRefusingNewSessionsUntilDrainTimeoutThenItLeaves(t *testing.T) {
	_, gws, bases := drainCluster(t, "gateway: {drainTimeout: 3s}\n")
	gw1, base := gws[0], bases[0]
	ctx := ctxT(t, 60*time.Second)
	view := liveStream(t, ctx, base, "through-gw-1")

	if err := gw1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	var resp *http.Response
	var body string
	until(t, "gw-1 refusing a new publish after SIGTERM", 5*time.Second, func() bool {
		resp, body = do(t, http.MethodPost, base+"/whip/new-one", "application/sdp", publishOffer(t), nil)
		return resp.StatusCode == 503
	})
	if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "draining") {
		t.Errorf("a publish to a draining gateway: %d %v %s; want 503 draining with Retry-After", resp.StatusCode, resp.Header, body)
	}
	if code, _ := get(t, base+"/readyz"); code != 503 {
		t.Errorf("/readyz of a draining gateway: %d; want 503, so load balancers send nothing more", code)
	}
	until(t, "gw-2 seeing gw-1 tagged draining", 5*time.Second, func() bool {
		_, state := memberAt(t, bases[1], "gw-1")
		return state == "draining"
	})
	waitPackets(t, view, 30, 2*time.Second) // the live session still runs
	select {
	case <-gw1.exited:
		t.Fatalf("gw-1 exited before its drain timeout with a live session")
	default:
	}
	select {
	case <-gw1.exited:
	case <-time.After(3*time.Second + 5*time.Second):
		t.Fatalf("gw-1 still running %s after SIGTERM; drainTimeout is 3s", time.Since(signalled))
	}
	t.Logf("gw-1 exited %s after SIGTERM", time.Since(signalled).Round(10*time.Millisecond))
	if gw1.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("gw-1 exit code %d after a drain; want 0", gw1.cmd.ProcessState.ExitCode())
	}
	until(t, "gw-2 seeing gw-1 leave the cluster", 10*time.Second, func() bool {
		status, _ := memberAt(t, bases[1], "gw-1")
		return status == "left"
	})
}

func TestSIGINTDrainsAGatewayWithNoLiveSessionAtOnce(t *testing.T) {
	_, gws, bases := drainCluster(t, "gateway: {drainTimeout: 30s}\n")
	if err := gws[0].cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gws[0].exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("a gateway with nothing to drain did not exit on SIGINT (drainTimeout 30s)")
	}
	until(t, "gw-2 seeing gw-1 leave", 10*time.Second, func() bool {
		status, _ := memberAt(t, bases[1], "gw-1")
		return status == "left"
	})
}

func TestSIGTERMDrainsAnAgentProcessItsLiveStreamRunsOnAndNewOnesAreRefused(t *testing.T) {
	agent, _, bases := drainCluster(t, "agent: {drainTimeout: 3s}\n")
	ctx := ctxT(t, 60*time.Second)
	view := liveStream(t, ctx, bases[0], "on-agent-1")
	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	until(t, "the gateway seeing agent-1 draining", 5*time.Second, func() bool {
		_, state := memberAt(t, bases[0], "agent-1")
		return state == "draining"
	})
	resp, body := do(t, http.MethodPost, bases[0]+"/whip/refused", "application/sdp", publishOffer(t), nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a publish while the only agent drains: %d %v %s; want 503 with Retry-After", resp.StatusCode, resp.Header, body)
	}
	waitPackets(t, view, 30, 2*time.Second)
	select {
	case <-agent.exited:
	case <-time.After(3*time.Second + 8*time.Second):
		t.Fatalf("the agent still runs long after its 3s drain timeout")
	}
	if len(children(agent.cmd.Process.Pid)) != 0 {
		t.Errorf("the drained agent left node processes behind")
	}
}

func TestAStandaloneAgentServesItsOwnMetricsWhereAgentMetricsSays(t *testing.T) {
	dir := t.TempDir()
	addr := freeport.Loopback(t)
	cfg := writeConfig(t, "agent: {metrics: '"+addr+"'}\n")
	sluiceOK(t, "ca", "init", "--dir", dir)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-m", "--host", "127.0.0.1")
	a := start(t, "agent", "--config", cfg, "--tls-dir", dir, "--tls-name", "agent-m", "--bind", freeport.Loopback(t), "--api", "127.0.0.1:0")
	m := a.waitLine(regexp.MustCompile(`is ready: .*metrics (http://\S+/metrics)`), 30*time.Second)
	if m[1] != "http://"+addr+"/metrics" {
		t.Fatalf("the agent serves metrics at %s; agent.metrics says %s", m[1], addr)
	}
	var body string
	until(t, "the agent's node series", 10*time.Second, func() bool {
		_, body = get(t, m[1])
		return strings.Contains(body, "sluice_agent_nodes 1")
	})
	if !strings.Contains(body, "process_resident_memory_bytes") || !strings.Contains(body, "sluice_agent_streams") {
		t.Fatalf("the agent's /metrics lacks its series:\n%s", body)
	}

	off := writeConfig(t, "agent: {metrics: 'off'}\n")
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-n", "--host", "127.0.0.1")
	b := start(t, "agent", "--config", off, "--tls-dir", dir, "--tls-name", "agent-n", "--bind", freeport.Loopback(t), "--api", "127.0.0.1:0")
	if l := b.waitLine(regexp.MustCompile(`is ready: .*`), 30*time.Second)[0]; strings.Contains(l, "metrics") {
		t.Fatalf("agent.metrics off, yet: %s", l)
	}
}
