package config

import (
	"strings"
	"testing"
)

func TestGatewayScaleTakesAGlobalRuleAndPerPurposeRules(t *testing.T) {
	f, err := Parse([]byte("gateway:\n  scale: {streamsPerAgent: 10, maxAgents: 3, purposes: {record: {streamsPerAgent: 2}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Gateway.Scale
	if s.StreamsPerAgent != 10 || s.MaxAgents != 3 || s.Purposes["record"] != (ScaleRule{StreamsPerAgent: 2}) {
		t.Fatalf("gateway.scale = %+v", s)
	}
	for doc, want := range map[string]string{
		"gateway:\n  scale: {streamsPerAgent: -1}\n":                       "gateway.scale.streamsPerAgent: -1 is negative",
		"gateway:\n  scale: {maxAgents: -2}\n":                             "gateway.scale.maxAgents: -2 is negative",
		"gateway:\n  scale: {purposes: {record: {maxAgents: -1}}}\n":       "gateway.scale.purposes.record.maxAgents: -1 is negative",
		"gateway:\n  scale: {streamsPerAgent: ten}\n":                      `gateway.scale.streamsPerAgent: "ten" is not a number`,
		"gateway:\n  scale: {threshold: 10}\n":                             "gateway.scale.threshold: unknown field",
		"gateway:\n  scale: {purposes: {relay: {streamsPerAgent: 1.5}}}\n": "gateway.scale.purposes.relay.streamsPerAgent: 1.5 is not a whole number",
	} {
		if _, err := Parse([]byte(doc)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", doc, err, want)
		}
	}
}
