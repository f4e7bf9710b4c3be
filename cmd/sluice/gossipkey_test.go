package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// `sluice ca gossip-key rotate` moves a three-member cluster (an agent, two
// gateways) to a new gossip key while a stream is live: no member leaves, the
// viewer keeps getting media on the same session, and the members keep the
// new key, alone, in their TLS directory for their next start.
func TestGossipKeyRotationKeepsEveryMemberAndTheStreamFlowing(t *testing.T) {
	agent, bases := startCluster(t, 2)
	dir := agent.cmd.Args[3] // sluice agent --tls-dir DIR …
	ctx := ctxT(t, 60*time.Second)
	view := liveStream(t, ctx, bases[0], "rotating")
	oldKey, err := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}

	out := sluiceOK(t, "ca", "gossip-key", "rotate", "--addr", strings.TrimPrefix(bases[1], "http://"))
	if !strings.Contains(out, "3 members switched, 1 old keys removed") {
		t.Fatalf("sluice ca gossip-key rotate said %q", out)
	}
	time.Sleep(100 * time.Millisecond)
	waitPackets(t, view, 50, 10*time.Second)
	if st := view.PC.ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Fatalf("the viewer's session is %s after the rotation", st)
	}
	time.Sleep(3 * time.Second) // serf's failure detection would have struck by now
	for _, base := range bases {
		_, body := get(t, base+"/v1/cluster")
		var c struct {
			Members []struct{ Name, Status string } `json:"members"`
		}
		_ = json.Unmarshal([]byte(body), &c)
		if len(c.Members) != 3 {
			t.Fatalf("%s sees %d members after the rotation: %s", base, len(c.Members), body)
		}
		for _, m := range c.Members {
			if m.Status != "alive" {
				t.Fatalf("%s sees %s %s after the rotation", base, m.Name, m.Status)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "gossip.keyring"))
	if err != nil {
		t.Fatalf("no keyring kept for the next start: %v", err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) != 1 || strings.Contains(string(b), string(oldKey)) {
		t.Fatalf("the kept keyring is %s; want the one new key", b)
	}
}
