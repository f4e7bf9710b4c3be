package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// TestAPoolPastItsCrashBudgetIsFailedInStatusAndInTheClusterTags kills the dev
// agent's nodes until its pool passes its restart intensity, then reads
// `sluice status` and /v1/cluster as an operator would.
func TestAPoolPastItsCrashBudgetIsFailedInStatusAndInTheClusterTags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte("process:\n  relay:\n    intensity:\n      maxRestarts: 2\n      period: 1m\n"), 0o644)
	p, base := startDev(t, "--config", cfg)
	addr := strings.TrimPrefix(base, "http://")

	out := sluiceOK(t, "status", "--addr", addr)
	if !strings.Contains(out, "agent/dev") || !strings.Contains(out, "running") || !strings.Contains(out, "NAME") {
		t.Fatalf("status before the crashes:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out = sluiceOK(t, "status", "--addr", addr)
		if strings.Contains(out, "pool/relay") && strings.Contains(out, "failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool never showed as failed:\n%s", out)
		}
		for _, pid := range children(p.cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if !strings.Contains(out, "intensity limit") {
		t.Errorf("status does not say why the pool failed:\n%s", out)
	}
	js := sluiceOK(t, "status", "--addr", addr, "--json")
	if !strings.Contains(js, `"failed": true`) {
		t.Errorf("status --json lacks the failed pool:\n%s", js)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, body := get(t, base+"/v1/cluster")
		if strings.Contains(body, `"failed": "relay"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/v1/cluster does not tag the failed pool:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// And placement avoids it: a publish is refused with a clear problem.
	code, body := postOffer(t, base+"/whip/after-failure")
	if code != 503 || !strings.Contains(body, "no agent serves purpose relay") {
		t.Fatalf("publish to a cluster whose only pool failed: %d %s", code, body)
	}
}

func TestTheStatusSummaryCountsWhatItsTableShows(t *testing.T) {
	now := time.Now()
	agents := []wire.Status{
		{Agent: "a", State: "serving", Started: now, Nodes: []wire.NodeInfo{
			{ID: "relay-1", State: "running", Streams: 2, StartedAt: now},
			{ID: "relay-2", State: "running", Streams: 0, StartedAt: now},
			{ID: "relay-3", State: "starting", StartedAt: now},
		}},
		{Agent: "b", State: "serving", Started: now, Summary: wire.StatusSummary{Running: 0, Sleeping: 1, Respawns: 3}, Nodes: []wire.NodeInfo{
			{ID: "relay-4", State: "running", Streams: 1, StartedAt: now},
			{ID: "relay-5", State: "recycling", Streams: 1, StartedAt: now},
		}},
	}
	var out strings.Builder
	printStatus(&out, agents, nil, now)
	lines := strings.Split(out.String(), "\n")
	var running, sleeping, respawns int
	if _, err := fmt.Sscanf(lines[0], "processes: %d running, %d sleeping, %d respawns", &running, &sleeping, &respawns); err != nil {
		t.Fatalf("summary line %q: %v", lines[0], err)
	}
	rows := map[string]int{}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) == 7 && strings.HasPrefix(f[0], "relay-") {
			rows[f[6]]++
		}
	}
	if running != rows["running"] || sleeping != rows["sleeping"] || running != 2 || sleeping != 1 || respawns != 3 {
		t.Fatalf("summary %d running, %d sleeping, %d respawns; table %v:\n%s", running, sleeping, respawns, rows, out.String())
	}
}
