package wasm

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Slot names.
const (
	SlotRoute    = "route"
	SlotThrottle = "throttle"
	SlotAuth     = "auth"
)

// slotNames are the slots every host has, in the order they are started.
var slotNames = []string{SlotRoute, SlotThrottle, SlotAuth}

// Failure modes: what a slot decides when its module cannot.
const (
	FailOpen     = "open"     // route: candidates in the given order; throttle and auth: admit
	FailClosed   = "closed"   // refuse with 503
	FailFallback = "fallback" // the slot's native policy (Config.Fallback)
)

// Config configures the policy host. The fields read from the config file
// (plugins:) come first; the last three are what the program embedding the
// host hands in, since the host knows no particular policy. The zero value
// starts both slots with no module, failing open.
type Config struct {
	// Dir is watched for SLOT.wasm files (route.wasm, throttle.wasm, auth.wasm): a file that
	// appears or changes is loaded into its slot, as with PUT /v1/plugins/SLOT.
	// Default: none.
	Dir string `yaml:"dir"`
	// CacheDir holds wazero's compilation cache, so a module compiled once loads in
	// milliseconds after. Default: $XDG_CACHE_HOME/sluice/wazero (or a temporary
	// directory when there is no cache home).
	CacheDir string `yaml:"cacheDir"`
	// KeepPrevious is how long a module that left its slot keeps its compiled
	// code, so that swapping back or rolling back meanwhile compiles nothing.
	// After it the code goes (a Go guest's is ~10 MiB of machine code and as
	// much Go heap) and a rollback compiles the module again from the
	// compilation cache. Default 10s; negative keeps none.
	KeepPrevious time.Duration `yaml:"keepPrevious"`
	// Slots configures each slot by name.
	Slots map[string]SlotConfig `yaml:"slots"`

	// Builtins are the modules the program ships, by name: a slot whose Module
	// is "builtin:NAME" loads Builtins[NAME]. Set by the program (cmd/sluice
	// hands in package plugins'), not read from the file. Default: none, and a
	// "builtin:" module is refused.
	Builtins map[string]Builtin `yaml:"-"`
	// DefaultModules names, by slot, the module a slot loads when its Module is
	// empty, for example {"route": "builtin:route-hrw"}. Not read from the file.
	// Default: none: such a slot starts without a module and answers by its
	// failure setting until one is loaded.
	DefaultModules map[string]string `yaml:"-"`
	// Fallback is the native policies of the fallback failure setting. Not read
	// from the file. Default: none, and then a slot's failure defaults to open
	// rather than fallback.
	Fallback Fallback `yaml:"-"`
}

// Builtin is a module the program ships.
type Builtin struct {
	// Module is the module's bytes.
	Module []byte
	// CheckConfig reports the first value of a slot's config the module would
	// refuse, naming its key, so that the file is refused at start rather than
	// every call failing later. It is given the slot's config values. Default
	// nil: nothing is checked.
	CheckConfig func(config map[string]string) error
}

// Fallback holds a native Go policy per slot, which a slot whose failure
// setting is fallback answers with when its module cannot decide. Both are
// called concurrently.
type Fallback struct {
	// Route ranks the agents for the route slot. Default nil.
	Route func(in *abi.RouteInput) abi.RouteOutput
	// Throttle decides admission for the throttle slot, reading the slot's
	// config values and shared store from env. Default nil.
	Throttle func(env Env, in *abi.ThrottleInput) abi.ThrottleOutput
	// Auth allows or denies a request for the auth slot. Default nil.
	Auth func(env Env, in *abi.AuthInput) abi.AuthOutput
}

// Env is a slot's config values and shared store, as its native fallback
// reads them.
type Env interface {
	Config(key string) (string, bool)
	KVGet(key string) int64
	KVSet(key string, v int64)
}

// has reports whether f has a native policy for the slot.
func (f Fallback) has(slot string) bool {
	switch slot {
	case SlotRoute:
		return f.Route != nil
	case SlotThrottle:
		return f.Throttle != nil
	case SlotAuth:
		return f.Auth != nil
	}
	return false
}

// SlotConfig configures one slot. Zero values mean the documented defaults.
type SlotConfig struct {
	// Module is the path of the slot's .wasm, or "builtin:NAME" (one of
	// Config.Builtins). Default: the slot's Config.DefaultModules entry
	// (sluice: builtin:route-hrw, builtin:throttle-m2).
	Module string `yaml:"module"`
	// Failure is open, closed or fallback. Default fallback when the program
	// gave the slot a native policy (sluice does for both), open otherwise.
	Failure string `yaml:"failure"`
	// Config values the policy reads with sdk.Config.
	Config map[string]string `yaml:"config"`
	// Pool is the number of instances kept ready; calls beyond it wait. Default 4.
	Pool int `yaml:"pool"`
	// MemoryPages caps a guest's memory, in 64 KiB pages. Default 1024 (64 MiB).
	MemoryPages uint32 `yaml:"memoryPages"`
	// Deadline bounds one call. Default 100ms.
	Deadline time.Duration `yaml:"deadline"`
	// Trusted runs the module as it is, without the rewrite that lets the host
	// stop a call at Deadline: a guest that loops forever then holds its
	// goroutine and a core forever. It saves little (the rewrite's polls cost a
	// tight loop ~1.8×, real policies nothing measurable) and exists for modules
	// the rewrite refuses. Default false. RATIONALE.md has the measurements.
	Trusted bool `yaml:"trusted"`
	// MaxOutput bounds an output, in bytes. Default 64 KiB.
	MaxOutput int `yaml:"maxOutput"`
	// BreakerFailures consecutive failed calls take the module out of service (the
	// slot falls back) for BreakerBackoff, doubling while it keeps failing, up to a
	// minute. Default 5 and 1s; -1 disables the breaker.
	BreakerFailures int           `yaml:"breakerFailures"`
	BreakerBackoff  time.Duration `yaml:"breakerBackoff"`
}

// slot returns the settings of the named slot with every default filled in.
func (cfg Config) slot(slot string) (SlotConfig, error) {
	c := cfg.Slots[slot]
	if c.Module == "" {
		c.Module = cfg.DefaultModules[slot]
	}
	if name, ok := strings.CutPrefix(c.Module, "builtin:"); ok && cfg.Builtins[name].Module == nil {
		return c, fmt.Errorf("plugins.slots.%s.module: no built-in policy %q (have %s)", slot, name, strings.Join(cfg.builtinNames(), ", "))
	}
	native := cfg.Fallback.has(slot)
	if c.Failure == "" {
		c.Failure = FailOpen
		if native {
			c.Failure = FailFallback
		}
	}
	switch c.Failure {
	case FailOpen, FailClosed:
	case FailFallback:
		if !native {
			return c, fmt.Errorf("plugins.slots.%s.failure: fallback, but this program has no native %s policy", slot, slot)
		}
	default:
		return c, fmt.Errorf("plugins.slots.%s.failure: %q is not open, closed or fallback", slot, c.Failure)
	}
	if c.Pool == 0 {
		c.Pool = 4
	}
	if c.Pool < 1 || c.Pool > 256 {
		return c, fmt.Errorf("plugins.slots.%s.pool: %d is outside 1..256", slot, c.Pool)
	}
	if c.MemoryPages == 0 {
		c.MemoryPages = 1024
	}
	if c.MemoryPages > 65536 {
		return c, fmt.Errorf("plugins.slots.%s.memoryPages: %d is over 65536 (4 GiB)", slot, c.MemoryPages)
	}
	if c.Deadline == 0 {
		c.Deadline = 100 * time.Millisecond
	}
	if c.Deadline < 0 {
		return c, fmt.Errorf("plugins.slots.%s.deadline: negative", slot)
	}
	if c.MaxOutput == 0 {
		c.MaxOutput = 64 << 10
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerBackoff == 0 {
		c.BreakerBackoff = time.Second
	}
	return c, nil
}

// Validate reports the first invalid field of c, naming it as in the config
// file; a built-in module's config values are checked by its CheckConfig.
func (cfg Config) Validate() error {
	for name := range cfg.Slots {
		if !slices.Contains(slotNames, name) {
			return fmt.Errorf("plugins.slots.%s: unknown slot (have %s)", name, strings.Join(slotNames, ", "))
		}
	}
	for _, name := range slotNames {
		sc, err := cfg.slot(name)
		if err != nil {
			return err
		}
		bname, ok := strings.CutPrefix(sc.Module, "builtin:")
		if check := cfg.Builtins[bname].CheckConfig; ok && check != nil {
			if err := check(sc.Config); err != nil {
				return fmt.Errorf("plugins.slots.%s.config: %w", name, err)
			}
		}
	}
	return nil
}

func (cfg Config) builtinNames() []string {
	var names []string
	for n := range cfg.Builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
