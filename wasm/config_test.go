package wasm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/sdk/abi"
)

// TestConfigErrorsNameTheFieldAndTheProgramsParts: what the program hands in
// (built-ins, their config checks, native fallbacks) decides what a file may
// say, and every refusal names the field as the file spells it.
func TestConfigErrorsNameTheFieldAndTheProgramsParts(t *testing.T) {
	errBad := errors.New(`relay.enable: "perhaps" is not true or false`)
	program := Config{
		Builtins: map[string]Builtin{
			"route-x":    {Module: []byte("\x00asm")},
			"throttle-x": {Module: []byte("\x00asm"), CheckConfig: func(c map[string]string) error { return map[bool]error{true: errBad}[c["relay.enable"] == "perhaps"] }},
		},
		Fallback: Fallback{Route: func(*abi.RouteInput) abi.RouteOutput { return abi.RouteOutput{} }},
	}
	for _, c := range []struct {
		slots map[string]SlotConfig
		want  string // "" when valid
	}{
		{map[string]SlotConfig{SlotRoute: {Module: "builtin:route-x", Failure: FailFallback}}, ""},
		{map[string]SlotConfig{SlotRoute: {Module: "builtin:nope"}}, `plugins.slots.route.module: no built-in policy "nope" (have route-x, throttle-x)`},
		{map[string]SlotConfig{SlotThrottle: {Failure: FailFallback}}, "plugins.slots.throttle.failure: fallback, but this program has no native throttle policy"},
		{map[string]SlotConfig{SlotThrottle: {Module: "builtin:throttle-x", Config: map[string]string{"relay.enable": "perhaps"}}}, "plugins.slots.throttle.config: relay.enable"},
		{map[string]SlotConfig{SlotThrottle: {Module: "builtin:throttle-x", Config: map[string]string{"relay.enable": "true"}}}, ""},
		{map[string]SlotConfig{"ingest": {}}, "plugins.slots.ingest: unknown slot"},
	} {
		cfg := program
		cfg.Slots = c.slots
		err := cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: Validate() = %v, want %q", c.slots, err, c.want)
		}
	}
}

// TestAFailureSettingDefaultsToFallbackOnlyWhereTheProgramGaveANativePolicy:
// a slot with no module answers by its failure setting, and without a native
// policy that is open (the candidates in order), not a call of nothing.
func TestAFailureSettingDefaultsToFallbackOnlyWhereTheProgramGaveANativePolicy(t *testing.T) {
	ctx := context.Background()
	in := &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(3)}
	h := newHost(t, Config{Builtins: map[string]Builtin{}})
	out, err := h.Route(ctx, in)
	if err != nil || len(out.Agents) != 3 || out.Agents[0] != in.Candidates[0].ID {
		t.Fatalf("a slot with no module and no native policy answered %+v, %v; want the candidates in order", out, err)
	}
	if st := h.Status(); st[0].Module != nil || st[0].Failure != FailOpen || st[0].Fallbacks != 1 {
		t.Fatalf("status %+v: want no module, failure open, one fallback", st[0])
	}
	native := Config{Builtins: map[string]Builtin{}, Fallback: Fallback{Route: func(*abi.RouteInput) abi.RouteOutput { return abi.RouteOutput{Agents: []string{"native"}} }}}
	h = newHost(t, native)
	if out, err := h.Route(ctx, in); err != nil || len(out.Agents) != 1 || out.Agents[0] != "native" {
		t.Fatalf("with a native route policy the empty slot answered %+v, %v; want the native answer", out, err)
	}
}
