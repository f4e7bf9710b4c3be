package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/wire"
)

func TestAnAgentsOwnTagsReachTheClusterBesideItsLoad(t *testing.T) {
	a := startAgent(t, nil, func(c *Config) { c.Tags = map[string]string{"region": "eu-west", "gpu": "1"} })
	waitFor(t, "the tags in the member list", 5*time.Second, func() bool {
		for _, m := range a.cluster.Members() {
			if m.Name == "agent-t" {
				return m.Tags["region"] == "eu-west" && m.Tags["gpu"] == "1" && m.Tags[wire.TagLoad] == "0" && m.Tags[wire.TagAPI] == a.APIAddr()
			}
		}
		return false
	})
}

func TestBadAgentTagsAreRefusedWithTheFieldNamed(t *testing.T) {
	for _, c := range []struct {
		name string
		tags map[string]string
		want string // "" = accepted
	}{
		{"region and gpu", map[string]string{"region": "eu-west", "gpu": "1", "zone": "eu-west-1a"}, ""},
		{"none", nil, ""},
		{"a built-in key", map[string]string{"load": "0"}, "agent.tags.load: is a built-in tag"},
		{"the state key", map[string]string{"state": "serving"}, "agent.tags.state: is a built-in tag"},
		{"an upper-case key", map[string]string{"Region": "eu"}, "agent.tags.Region: the key is not"},
		{"a key with a dot", map[string]string{"a.b": "eu"}, "agent.tags.a.b: the key is not"},
		{"an empty value", map[string]string{"region": ""}, `agent.tags.region: "" is not`},
		{"a space in the value", map[string]string{"region": "eu west"}, `agent.tags.region: "eu west" is not`},
		{"a long value", map[string]string{"region": strings.Repeat("e", 65)}, "agent.tags.region:"},
		{"too many bytes", map[string]string{"a": strings.Repeat("x", 60), "b": strings.Repeat("x", 60), "c": strings.Repeat("x", 60)},
			"agent.tags: the tags take 201 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Config{ID: "a1", Tags: c.tags}.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// The own-tag budget leaves room for the largest built-in tags, so a load
// update is never refused for size.
func TestTheFullTagBudgetFitsBesideTheLargestBuiltInTags(t *testing.T) {
	tags := map[string]string{
		wire.TagRole: wire.RoleAgent, wire.TagID: strings.Repeat("a", 64), wire.TagAPI: "[fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535",
		wire.TagPurposes: "relay,record,transcode", wire.TagCapacity: "4096000", wire.TagLoad: "409600", wire.TagQueue: "65536",
		wire.TagCPU: "100", wire.TagMem: "1048576", wire.TagState: wire.StateDraining, wire.TagFailed: "relay,record,transcode",
		wire.TagConcurrent: "4096",
	}
	own := map[string]string{"region": strings.Repeat("r", 64), "zone": strings.Repeat("z", 64), "g": strings.Repeat("g", 35)}
	if err := checkTags(own); err != nil {
		t.Fatalf("the budget itself is refused: %v", err)
	}
	for k, v := range own {
		tags[k] = v
	}
	c, err := cluster.Start(context.Background(), cluster.Config{Name: "budget", Bind: freeport.Loopback(t), Dev: true, Tags: tags}, quiet())
	if err != nil {
		t.Fatalf("built-in tags at their largest plus %d bytes of own tags do not fit: %v", MaxTagBytes, err)
	}
	c.Close()
}
