package promexpo

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// Every family on a page gets a HELP text and a TYPE line once, the process
// series included; a family Help lacks still gets a text.
func TestWriteGivesEveryFamilyHelpAndType(t *testing.T) {
	set := metrics.NewSet()
	set.NewCounter(`sluice_gateway_refused_total`).Inc()
	set.NewCounter(`sluice_unlisted_total{kind="a"}`).Inc()
	set.NewCounter(`sluice_unlisted_total{kind="b"}`).Inc()
	var b bytes.Buffer
	Write(&b, set)
	page := b.String()
	for _, want := range []string{
		"# HELP sluice_gateway_refused_total " + Help["sluice_gateway_refused_total"] + "\n# TYPE sluice_gateway_refused_total counter\n",
		"# HELP sluice_unlisted_total sluice unlisted total.\n",
		"# TYPE process_cpu_seconds_total counter\n",
		"# TYPE process_resident_memory_bytes gauge\n",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if n := strings.Count(page, "# TYPE sluice_unlisted_total "); n != 1 {
		t.Errorf("a family with two series has %d TYPE lines, want 1", n)
	}
	for line := range strings.Lines(page) {
		if strings.HasPrefix(line, "# HELP ") && len(strings.Fields(line)) < 4 {
			t.Errorf("a HELP line without text: %q", line)
		}
	}
}

// docs/metrics.md lists every family that has a HELP text.
func TestEveryFamilyWithHelpIsInTheMetricsDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range Help {
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("%s is not in docs/metrics.md", name)
		}
	}
}
