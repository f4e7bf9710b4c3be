package session

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// scrape is what a gateway's set writes on /metrics.
func scrape(s *metrics.Set) string {
	var b bytes.Buffer
	s.WritePrometheus(&b)
	return b.String()
}

// perStream counts the series on page that carry a stream label, and those of
// one stream.
func perStream(page, stream string) (all, one int) {
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "#") || !strings.Contains(line, `stream="`) {
			continue
		}
		all++
		if strings.Contains(line, fmt.Sprintf(`stream=%q`, stream)) {
			one++
		}
	}
	return all, one
}

// A gateway playing 1,000 streams writes at most 3×StreamSeriesLimit+2
// per-stream series: the busiest streams by name, the rest summed into
// stream="_other"; a stream that ends takes its series with it.
func TestAThousandStreamsWriteABoundedNumberOfSeries(t *testing.T) {
	set := metrics.NewSet()
	c := testCore()
	c.m = newCoreMetrics(set, c)
	set.UnregisterMetric("sluice_gateway_agents") // the test core has no cluster to count
	subs := make([]*Subscription, 1000)
	for i := range subs {
		id := fmt.Sprintf("s%04d", i)
		s := c.newSubscription(id, placement{Agent: "a1", Node: "relay-1"})
		c.subs[id] = s
		s.members++
		if !s.Viewing() {
			t.Fatal("a live subscription refused a viewer")
		}
		if i == 999 { // the busiest stream must keep its own series
			s.members++
			s.Viewing()
		}
		s.write(0, framedRTP(0, uint16(i))[1:])
		subs[i] = s
	}
	page := scrape(set)
	bound := 3*StreamSeriesLimit + 2
	all, busiest := perStream(page, "s0999")
	if all > bound {
		t.Fatalf("1,000 streams wrote %d per-stream series, over the bound %d", all, bound)
	}
	if busiest != 3 {
		t.Fatalf("the stream with the most viewers has %d series, want 3 (info, viewers, bitrate):\n%s", busiest, page)
	}
	if !strings.Contains(page, `sluice_stream_viewers{stream="_other"} 900`) {
		t.Fatalf("the 900 streams past the limit do not sum their 900 viewers into _other:\n%.2000s", page)
	}
	if !strings.Contains(page, "sluice_gateway_streams 1000\n") || !strings.Contains(page, `sluice_gateway_sessions{kind="play"} 1001`) {
		t.Fatalf("the gateway's stream or viewer count is wrong:\n%.2000s", page)
	}

	// Every stream ends: its series go, the sessions gauge falls, the count of
	// sessions started stays.
	for _, s := range subs {
		for s.viewers > 0 {
			s.Leave(true)
		}
		s.end()
	}
	page = scrape(set)
	if all, _ := perStream(page, ""); all != 0 {
		t.Fatalf("%d per-stream series remain after every stream ended:\n%.2000s", all, page)
	}
	if !strings.Contains(page, `sluice_gateway_sessions{kind="play"} 0`) || !strings.Contains(page, `sluice_gateway_sessions_total{kind="play"} 1001`) {
		t.Fatalf("after the streams ended, live viewers must be 0 and started 1001:\n%s", page)
	}
}
