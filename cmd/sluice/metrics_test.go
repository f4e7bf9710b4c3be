package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/promexpo"
)

// prometheusTool is the path of one of Debian's prometheus package's programs
// (promtool, prometheus). Without it the test skips, unless
// SLUICE_REQUIRE_PROMETHEUS is set (.ci/run installs the package and sets it).
func prometheusTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("SLUICE_REQUIRE_PROMETHEUS") != "" {
		t.Fatalf("SLUICE_REQUIRE_PROMETHEUS is set but %s is missing (apt-get install -y prometheus)", name)
	}
	t.Skipf("SKIPPED: %s is not installed (apt-get install -y prometheus); .ci/run installs it and requires the test", name)
	return ""
}

// promtoolCheck fails the test with promtool's findings on page.
func promtoolCheck(t *testing.T, promtool, what, page string) {
	t.Helper()
	if !strings.Contains(page, "# TYPE sluice_") {
		t.Fatalf("%s has no sluice series with metadata:\n%.3000s", what, page)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics on %s: %v\n%s", what, err, out)
	}
}

var typeLineRE = regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)

// families maps each family on a page to its type.
func families(page string) map[string]string {
	out := map[string]string{}
	for _, m := range typeLineRE.FindAllStringSubmatch(page, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// The /metrics of a live gateway (sluice dev with a stream) and of a
// standalone agent pass promtool (names, types, HELP text), their counters
// and histograms are typed as such, and every sluice family is in
// docs/metrics.md.
func TestTheGatewayAndAgentMetricsPassPromtoolAndAreDocumented(t *testing.T) {
	promtool := prometheusTool(t, "promtool")
	_, base := startDev(t)
	liveStream(t, ctxT(t, 60*time.Second), base, "metrics-live")
	var page string
	until(t, "the stream's own series", 10*time.Second, func() bool {
		_, page = get(t, base+"/metrics")
		return strings.Contains(page, `sluice_stream_viewers{stream="metrics-live"} 1`)
	})
	promtoolCheck(t, promtool, "the gateway's /metrics", page)
	got := families(page)
	for name, typ := range map[string]string{
		"sluice_plugin_calls_total": "counter", "sluice_plugin_call_duration_seconds": "histogram",
		"sluice_gateway_sessions": "gauge", "sluice_gateway_sessions_total": "counter",
		"sluice_agent_respawns_total": "counter", "sluice_node_resident_memory_bytes": "gauge",
		"sluice_stream_media_bytes_per_second": "gauge", "process_cpu_seconds_total": "counter",
	} {
		if got[name] != typ {
			t.Errorf("%s is typed %q on /metrics, want %s", name, got[name], typ)
		}
	}
	if !strings.Contains(page, `sluice_plugin_call_duration_seconds_bucket{slot="route",le="`) {
		t.Errorf("the plugin latency has no le buckets:\n%.3000s", page)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range got {
		if _, ok := promexpo.Help[name]; !ok {
			t.Errorf("%s has no HELP text in internal/promexpo/help.go", name)
		}
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("%s is not in docs/metrics.md", name)
		}
	}

	dir := t.TempDir()
	addr := freeport.Loopback(t)
	sluiceOK(t, "ca", "init", "--dir", dir)
	sluiceOK(t, "ca", "issue", "--dir", dir, "--name", "agent-p", "--host", "127.0.0.1")
	cfg := writeConfig(t, "agent: {metrics: '"+addr+"'}\n")
	a := start(t, "agent", "--config", cfg, "--tls-dir", dir, "--tls-name", "agent-p", "--bind", freeport.Loopback(t), "--api", "127.0.0.1:0")
	a.waitLine(regexp.MustCompile(`is ready: `), 30*time.Second)
	until(t, "the agent's node series", 10*time.Second, func() bool {
		_, page = get(t, "http://"+addr+"/metrics")
		return strings.Contains(page, "sluice_node_resident_memory_bytes{")
	})
	promtoolCheck(t, promtool, "the agent's /metrics", page)
}
