package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/mediatest"
)

// scaleOf is GET /v1/scale's line for purpose.
type scaleLine struct {
	Purpose                    string
	Streams, Queued, Agents    int
	StreamsPerAgent, MaxAgents int
	Desired                    *int
}

func scaleOf(t *testing.T, base, purpose string) (scaleLine, string) {
	t.Helper()
	code, body := get(t, base+"/v1/scale")
	var v struct{ Purposes []scaleLine }
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
		t.Fatalf("GET /v1/scale = %d %s (%v)", code, body, err)
	}
	for _, l := range v.Purposes {
		if l.Purpose == purpose {
			return l, body
		}
	}
	return scaleLine{}, body
}

// A live gateway with gateway.scale {streamsPerAgent: 2, maxAgents: 5} says
// it needs no agent while idle and ⌈3/2⌉ = 2 once three streams are live, in
// GET /v1/scale with its inputs and in sluice_cluster_desired_agents.
func TestTheScaleSignalFollowsLiveStreams(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	writeFile(t, cfg, "gateway:\n  scale: {streamsPerAgent: 2, maxAgents: 5}\n")
	_, base := startDev(t, "--config", cfg)
	waitScale := func(streams, desired int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			l, body := scaleOf(t, base, "relay")
			_, metrics := get(t, base+"/metrics")
			series := fmt.Sprintf(`sluice_cluster_desired_agents{purpose="relay"} %d`+"\n", desired)
			if l.Streams == streams && l.Agents == 1 && l.StreamsPerAgent == 2 && l.MaxAgents == 5 && l.Desired != nil && *l.Desired == desired &&
				strings.Contains(metrics, series) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %d streams, 1 agent, desired %d; GET /v1/scale = %s; /metrics has %q: %v", streams, desired, body, series, strings.Contains(metrics, series))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitScale(0, 0)
	ctx := ctxT(t, 60*time.Second)
	api, _ := mediatest.API()
	for i := range 3 {
		pub, err := mediatest.Publish(ctx, api, base, fmt.Sprintf("scale-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
	}
	waitScale(3, 2)
}
