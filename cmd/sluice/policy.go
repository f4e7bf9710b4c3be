package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/plugins"
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

// policyHost is the gateway's policies as the command wires them.
type policyHost struct {
	host *wasm.Host
}

// pluginsConfig decodes the config file's plugins section, refusing unknown
// fields.
func pluginsConfig(cfg *fileConfig) (wasm.Config, error) {
	var wc wasm.Config
	if cfg.Plugins.Kind == 0 {
		return wc, nil
	}
	raw, err := yaml.Marshal(&cfg.Plugins)
	if err != nil {
		return wc, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&wc); err != nil {
		return wc, fmt.Errorf("plugins: %w", err)
	}
	return wc, nil
}

// withBuiltins gives the policy host sluice's built-in policies: their modules
// (for "builtin:NAME"), each slot's default module, and the native fallbacks,
// which are the same Go code as the built-ins (package plugins/policy); log
// is the native throttle's.
func withBuiltins(wc wasm.Config, log logger) wasm.Config {
	wc.Builtins = map[string]wasm.Builtin{}
	for _, name := range plugins.Names {
		b, err := plugins.Builtin(name)
		if err != nil {
			panic(err) // plugins.Names lists what it embeds
		}
		wc.Builtins[name] = wasm.Builtin{Module: b}
	}
	m2 := wc.Builtins["throttle-m2"]
	m2.CheckConfig = checkM2
	wc.Builtins["throttle-m2"] = m2
	wc.DefaultModules = map[string]string{wasm.SlotRoute: "builtin:route-hrw", wasm.SlotThrottle: "builtin:throttle-m2"}
	wc.Fallback = wasm.Fallback{Route: policy.RouteHRW, Throttle: (&m2Fallback{log: log}).decide,
		Auth: func(_ wasm.Env, in *abi.AuthInput) abi.AuthOutput { return policy.AuthGrants(in) }}
	return wc
}

// checkM2 reports the first M2 setting in a throttle slot's config values that
// the built-in would refuse, rather than have it admit every request with an
// error in the log. The purposes are those the keys name ("relay.enable").
func checkM2(config map[string]string) error {
	purposes := map[string]bool{}
	var list []string
	for k := range config {
		if p, _, ok := strings.Cut(k, "."); ok && !purposes[p] {
			purposes[p] = true
			list = append(list, p)
		}
	}
	_, err := policy.NewM2(mapEnv(config), list...)
	return err
}

// mapEnv is config values as a policy.Env with no store, for checking settings.
type mapEnv map[string]string

func (e mapEnv) Config(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (mapEnv) KVGet(string) int64               { return 0 }
func (mapEnv) KVSet(string, int64)              {}

// m2Fallback is the throttle slot's native fallback: M2, built at its first
// decision from the slot's config and the purposes of the pools it is shown,
// as the built-in module builds it.
type m2Fallback struct {
	log logger
	mu  sync.Mutex
	m2  *policy.M2
}

func (f *m2Fallback) decide(env wasm.Env, in *abi.ThrottleInput) abi.ThrottleOutput {
	f.mu.Lock()
	if f.m2 == nil {
		var purposes []string
		for _, p := range in.Pools {
			purposes = append(purposes, p.Purpose)
		}
		m, err := policy.NewM2(env, purposes...)
		if err != nil {
			f.mu.Unlock()
			f.log.Error("wasm: native throttle fallback misconfigured; admitting", "err", err)
			return abi.ThrottleOutput{Action: abi.Admit}
		}
		f.m2 = m
	}
	m := f.m2
	f.mu.Unlock()
	return m.Decide(env, in)
}

// newPolicy starts the Wasm policy host with the built-in or configured modules.
func newPolicy(ctx context.Context, cfg *fileConfig, log logger, set *metrics.Set) (*policyHost, func(), error) {
	wc, err := pluginsConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	log = log.With("component", "wasm")
	wc = withBuiltins(wc, log)
	if cfg.Auth.PolicyOn() {
		// The auth slot loads a module only when the gateway consults it.
		wc.DefaultModules[wasm.SlotAuth] = "builtin:auth-grants"
	}
	h, err := wasm.New(ctx, wc, log, set)
	if err != nil {
		return nil, nil, err
	}
	return &policyHost{host: h}, func() { _ = h.Close(context.Background()) }, nil
}
