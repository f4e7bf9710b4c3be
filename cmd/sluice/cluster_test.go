package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
)

func sluiceOK(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(sluiceBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startCluster makes a CA and runs one agent and n gateways as separate
// processes, each with its own certificate, joined over encrypted gossip.
func startCluster(t *testing.T, gateways int) (agent *proc, bases []string) {
	t.Helper()
	dir := t.TempDir()
	sluiceOK(t, "ca", "init", "--dir", dir)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-1", "--host", "127.0.0.1")
	agentSerf := freeport.Loopback(t)
	agent = start(t, "agent", "--tls-dir", dir, "--tls-name", "agent-1", "--bind", agentSerf, "--api", "127.0.0.1:0")
	agent.waitLine(regexp.MustCompile(`sluice agent agent-1 is ready`), 30*time.Second)
	for i := 1; i <= gateways; i++ {
		name := fmt.Sprintf("gw-%d", i)
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", name, "--host", "127.0.0.1")
		gw := start(t, "gateway", "--tls-dir", dir, "--tls-name", name, "--bind", freeport.Loopback(t), "--join", agentSerf, "--ice-bind", "127.0.0.1",
			"--http", "127.0.0.1:0", "--ice-port", "-1")
		m := gw.waitLine(regexp.MustCompile(`ready on (http://\S+)/ `), 30*time.Second)
		waitReady(t, m[1])
		bases = append(bases, m[1])
	}
	return agent, bases
}

func TestSeparateAgentAndGatewayProcessesRelayAKnownSequence(t *testing.T) {
	agent, bases := startCluster(t, 1)
	publishAndWatch(t, bases[0], bases[0], "split-1")
	if len(children(agent.cmd.Process.Pid)) == 0 {
		t.Fatal("the agent process has no node child")
	}
	code, body := get(t, bases[0]+"/v1/cluster")
	var c struct {
		Members []struct{ Name, Role, Status string } `json:"members"`
	}
	_ = json.Unmarshal([]byte(body), &c)
	roles := map[string]string{}
	for _, m := range c.Members {
		roles[m.Name] = m.Role + "/" + m.Status
	}
	if code != 200 || roles["agent-1"] != "agent/alive" || roles["gw-1"] != "gateway/alive" {
		t.Fatalf("GET /v1/cluster = %d %v", code, roles)
	}
}

func TestAViewerOnAnotherGatewayWatchesAStreamPublishedOnTheFirst(t *testing.T) {
	_, bases := startCluster(t, 2)
	publishAndWatch(t, bases[0], bases[1], "cross-gw")
}

func runSluice(args ...string) (string, error) {
	out, err := exec.Command(sluiceBin, args...).CombinedOutput()
	return string(out), err
}
