package config

import (
	"fmt"
	"maps"
	"slices"
)

// Scale is gateway.scale, the scale signal: with streamsPerAgent set,
// sluice_cluster_desired_agents{purpose} and GET /v1/scale say
// min(maxAgents, ⌈streams / streamsPerAgent⌉) per node purpose (SDR's
// WDM_WL_THRESHOLD and WDM_MAX_REPLICAS). Default off.
type Scale struct {
	StreamsPerAgent int `yaml:"streamsPerAgent" want:"an integer ≥ 0, 0 = no signal"` // default 0: no signal
	MaxAgents       int `yaml:"maxAgents" want:"an integer ≥ 0, 0 = no cap"`          // default 0: no cap
	// Purposes override the rule by node purpose; a field left 0 takes the
	// rule above. Default none.
	Purposes map[string]ScaleRule `yaml:"purposes"`
}

// ScaleRule is one purpose's threshold and cap.
type ScaleRule struct {
	StreamsPerAgent int `yaml:"streamsPerAgent" want:"an integer ≥ 0, 0 = no signal"` // default 0: no signal
	MaxAgents       int `yaml:"maxAgents" want:"an integer ≥ 0, 0 = no cap"`          // default 0: no cap
}

// checkScale refuses a negative threshold or cap, naming its field.
func checkScale(s Scale) error {
	check := func(path string, r ScaleRule) error {
		if r.StreamsPerAgent < 0 {
			return &FieldError{Path: path + "streamsPerAgent", Msg: fmt.Sprintf("%d is negative (want an integer ≥ 0, 0 = no signal)", r.StreamsPerAgent)}
		}
		if r.MaxAgents < 0 {
			return &FieldError{Path: path + "maxAgents", Msg: fmt.Sprintf("%d is negative (want an integer ≥ 0, 0 = no cap)", r.MaxAgents)}
		}
		return nil
	}
	if err := check("gateway.scale.", ScaleRule{s.StreamsPerAgent, s.MaxAgents}); err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(s.Purposes)) {
		if err := check("gateway.scale.purposes."+p+".", s.Purposes[p]); err != nil {
			return err
		}
	}
	return nil
}
