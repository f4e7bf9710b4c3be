package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryInvalidConfigFieldIsRefusedNamingTheField checks that bad config stops
// a subcommand at start, with the field and the allowed values in the message.
func TestEveryInvalidConfigFieldIsRefusedNamingTheField(t *testing.T) {
	cases := []struct{ yaml, field string }{
		{"gatewy:\n  listen: x\n", "gatewy"},
		{"process:\n  relay:\n    memory: lots\n", "process.relay.memory"},
		{"process:\n  relay:\n    memory: 1m\n", "process.relay.memory"},
		{"process:\n  relay:\n    concurrent: -1\n", "process.relay.concurrent"},
		{"process:\n  relay:\n    waitQueue: -2\n", "process.relay.waitQueue"},
		{"process:\n  relay:\n    respawnable: -1\n", "process.relay.respawnable"},
		{"process:\n  relay:\n    recovery: -1\n", "process.relay.recovery"},
		{"process:\n  relay:\n    procs: -1\n", "process.relay.procs"},
		{"process:\n  relay:\n    keepalive:\n      maxage: soon\n", `process.relay.keepalive.maxage: "soon" is not a duration`},
		{"process:\n  relay:\n    keepalive:\n      maxcount: -5\n", "process.relay.keepalive.maxcount: -5 is negative (want an integer ≥ 0"},
		{"process:\n  relay:\n    concurrent: many\n", `process.relay.concurrent: "many" is not a number (want an integer 0..4096`},
		{"process:\n  relay:\n    concurrent: 5000\n", "process.relay.concurrent: 5000 is outside 0..4096"},
		{"process:\n  relay:\n    warm: -2\n", "process.relay.warm: -2"},
		{"process:\n  relay:\n    intensity:\n      maxRestarts: -1\n", "process.relay.intensity.maxRestarts: -1"},
		{"agent:\n  queueLimit: -1\n", "agent.queueLimit: -1"},
		{"agent:\n  tags: {load: \"0\"}\n", "agent.tags.load: is a built-in tag"},
		{"agent:\n  tags: {region: eu west}\n", `agent.tags.region: "eu west" is not`},
		{"gateway:\n  scale: {streamsPerAgent: -1}\n", "gateway.scale.streamsPerAgent: -1 is negative"},
		{"gateway:\n  iceHosts: 10.0.0.1\n", `gateway.iceHosts: "10.0.0.1" is not a list`},
		{"process:\n  relay:\n    colour: blue\n", "colour"},
		{"memoryUsage:\n  workingRatio: 150\n", "memoryUsage.workingRatio"},
		{"memoryUsage:\n  totalUsableRatio: -3\n", "memoryUsage.totalUsableRatio"},
		{"agent:\n  drainTimeout: -1s\n", `agent.drainTimeout: "-1s" is negative`},
		{"plugins:\n  slots:\n    route:\n      failure: maybe\n", "plugins.slots.route.failure"},
		{"plugins:\n  slots:\n    route:\n      pool: 1000\n", "plugins.slots.route.pool"},
		{"plugins:\n  slots:\n    auth: {}\n", "plugins.slots.auth"},
		{"plugins:\n  slotz: {}\n", "slotz"},
		{"auth:\n  jwt:\n    secret: short\n", "auth.jwt.secret"},
		{"auth:\n  jwt:\n    secrte: x\n", "secrte"},
		{"auth:\n  policy: sometimes\n", "auth.policy"},
		{"auth:\n  jwt:\n    keys:\n      - file: /nonexistent/key.pem\n", "auth.jwt.keys[0]"},
		{"auth:\n  jwt:\n    jwksFile: /nonexistent/jwks.json\n", "auth.jwt.jwksFile"},
		{"plugins:\n  slots:\n    route:\n      module: builtin:nope\n", "plugins.slots.route.module"},
		{"inspection:\n  process:\n    schedule: '61 * * * * *'\n", "inspection.process.schedule"},
		{"inspection:\n  process:\n    retention: -1\n", "inspection.process.retention"},
		{"plugins:\n  slots:\n    throttle:\n      config:\n        relay.enable: perhaps\n", "plugins.slots.throttle.config: relay.enable"},
		{"plugins:\n  slots:\n    throttle:\n      config:\n        relay.matchingList: '[{\"pattern\":\"x\",\"action\":\"boom\"}]'\n", "relay.matchingList[0].action"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		os.WriteFile(path, []byte(c.yaml), 0o644)
		err := checkConfig(path)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("config %q: err = %v; want it to name %q", c.yaml, err, c.field)
		}
	}
	good := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(good, []byte("process:\n  relay:\n    memory: 120%\n    concurrent: 2\n    waitQueue: 8\n    keepalive:\n      maxcount: 100\n      maxage: 1h\n      timewait: 1m\n"), 0o644)
	if err := checkConfig(good); err != nil {
		t.Fatalf("a good config was refused: %v", err)
	}
}

func TestBadConfigExitsNonZeroBeforeStarting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("process:\n  relay:\n    concurrent: -1\n"), 0o644)
	out, err := runSluice("dev", "--config", path, "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "process.relay.concurrent") {
		t.Fatalf("sluice dev with bad config: err %v, output %q", err, out)
	}
}
