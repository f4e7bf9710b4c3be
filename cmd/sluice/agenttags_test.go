package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
)

// Two agent processes carry different region tags from their config files;
// two gateways run the region-affinity example policy, one with default
// region eu-west, one with us-east. Every stream published on a gateway lands
// on the agent of that gateway's region: the tags reached the policy. (A
// policy blind to the tags would put six streams on the matching agents by
// chance once in 64 runs.)
func TestRegionAffinityPlacesStreamsOnTheAgentWhoseConfiguredRegionTagMatches(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "region-affinity.wasm")
	sluiceOK(t, "plugin", "build", "../../examples/plugins/region-affinity", "-o", mod)
	sluiceOK(t, "ca", "init", "--dir", dir)

	regions := map[string]string{"agent-eu": "eu-west", "agent-us": "us-east"}
	var join string
	for _, name := range []string{"agent-eu", "agent-us"} {
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", name, "--host", "127.0.0.1")
		cfg := filepath.Join(dir, name+".yaml")
		writeFile(t, cfg, fmt.Sprintf("agent:\n  tags: {region: %s, gpu: \"1\"}\n", regions[name]))
		bind := freeport.Loopback(t)
		args := []string{"agent", "--config", cfg, "--tls-dir", dir, "--tls-name", name, "--bind", bind, "--api", "127.0.0.1:0", "--metrics", "off"}
		if join != "" {
			args = append(args, "--join", join)
		} else {
			join = bind
		}
		start(t, args...).waitLine(regexp.MustCompile(`sluice agent `+name+` is ready`), 30*time.Second)
	}

	ctx := ctxT(t, 90*time.Second)
	api, _ := mediatest.API()
	for _, region := range []string{"eu-west", "us-east"} {
		name := "gw-" + region
		sluiceOK(t, "ca", "issue", "--dir", dir, "--name", name, "--host", "127.0.0.1")
		cfg := filepath.Join(dir, name+".yaml")
		writeFile(t, cfg, fmt.Sprintf(
			"plugins:\n  slots:\n    route: {module: %s, failure: closed, config: {default-region: %s}}\n", mod, region))
		gw := start(t, "gateway", "--config", cfg, "--tls-dir", dir, "--tls-name", name, "--bind", freeport.Loopback(t), "--join", join,
			"--ice-bind", "127.0.0.1", "--http", "127.0.0.1:0", "--ice-port", "-1")
		base := gw.waitLine(regexp.MustCompile(`ready on (http://\S+)/ `), 30*time.Second)[1]
		waitForAgents(t, base, 2)
		for i := range 3 {
			stream := fmt.Sprintf("cam-%s-%d", region, i)
			pub, err := mediatest.Publish(ctx, api, base, stream)
			if err != nil {
				t.Fatalf("publish %s: %v", stream, err)
			}
			defer pub.Close()
			code, body := get(t, base+"/v1/streams/"+stream)
			var v struct{ Agent string }
			_ = json.Unmarshal([]byte(body), &v)
			if code != 200 || regions[v.Agent] != region {
				t.Errorf("stream %s published with default region %s: GET /v1/streams = %d, agent %q (region %q)", stream, region, code, v.Agent, regions[v.Agent])
			}
		}
	}
}

// waitForAgents waits until the gateway at base sees n serving agents.
func waitForAgents(t *testing.T, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := get(t, base+"/readyz")
		var r struct{ Agents int }
		if json.Unmarshal([]byte(body), &r) == nil && r.Agents == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz = %s; want %d agents", base, body, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
