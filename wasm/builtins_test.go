package wasm

import (
	"testing"

	"github.com/sluicegw/sluice/plugins"
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
)

// withBuiltins gives cfg sluice's built-in policies as cmd/sluice does: the
// tests run the host with the real Go guests and native fallbacks.
func withBuiltins(t testing.TB, cfg Config) Config {
	t.Helper()
	cfg.Builtins = map[string]Builtin{}
	for _, name := range plugins.Names {
		cfg.Builtins[name] = Builtin{Module: builtin(t, name)}
	}
	cfg.DefaultModules = map[string]string{SlotRoute: "builtin:route-hrw", SlotThrottle: "builtin:throttle-m2"}
	cfg.Fallback = Fallback{Route: policy.RouteHRW, Throttle: func(env Env, in *abi.ThrottleInput) abi.ThrottleOutput {
		m, err := policy.NewM2(env)
		if err != nil {
			return abi.ThrottleOutput{Action: abi.Admit}
		}
		return m.Decide(env, in)
	}}
	return cfg
}

// builtin is the module of a built-in policy.
func builtin(t testing.TB, name string) []byte {
	t.Helper()
	b, err := plugins.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
