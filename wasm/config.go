package wasm

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicegw/sluice/plugins/policy"
)

// Slot names.
const (
	SlotRoute    = "route"
	SlotThrottle = "throttle"
)

// Failure modes: what a slot decides when its module cannot.
const (
	FailOpen     = "open"     // route: candidates in the given order; throttle: admit
	FailClosed   = "closed"   // refuse with 503
	FailFallback = "fallback" // the native Go policy with the built-in's semantics
)

// Config configures the policy host. The zero value loads the built-in policies
// with the defaults below.
type Config struct {
	// Dir is watched for SLOT.wasm files (route.wasm, throttle.wasm): a file that
	// appears or changes is loaded into its slot, as with PUT /v1/plugins/SLOT.
	// Default: none.
	Dir string `yaml:"dir"`
	// CacheDir holds wazero's compilation cache, so a module compiled once loads in
	// milliseconds after. Default: $XDG_CACHE_HOME/sluice/wazero (or a temporary
	// directory when there is no cache home).
	CacheDir string `yaml:"cacheDir"`
	// Slots configures each slot by name.
	Slots map[string]SlotConfig `yaml:"slots"`
}

// SlotConfig configures one slot. Zero values mean the documented defaults.
type SlotConfig struct {
	// Module is the path of the slot's .wasm, or "builtin:NAME". Default: the
	// built-in policy of the slot (route-hrw, throttle-m2).
	Module string `yaml:"module"`
	// Failure is open, closed or fallback. Default fallback.
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

func (c SlotConfig) withDefaults(slot string) (SlotConfig, error) {
	if c.Module == "" {
		switch slot {
		case SlotRoute:
			c.Module = "builtin:route-hrw"
		case SlotThrottle:
			c.Module = "builtin:throttle-m2"
		}
	}
	if c.Failure == "" {
		c.Failure = FailFallback
	}
	switch c.Failure {
	case FailOpen, FailClosed, FailFallback:
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

// Validate reports the first invalid field of c, naming it as in the config file.
func (c Config) Validate() error {
	for name, sc := range c.Slots {
		if name != SlotRoute && name != SlotThrottle {
			return fmt.Errorf("plugins.slots.%s: unknown slot (have route, throttle)", name)
		}
		sc, err := sc.withDefaults(name)
		if err != nil {
			return err
		}
		if sc.Module == "builtin:throttle-m2" {
			// The built-in reads its settings from the config values: check them now
			// rather than have every request admitted with an error in the log.
			purposes := map[string]bool{}
			for k := range sc.Config {
				if p, _, ok := strings.Cut(k, "."); ok {
					purposes[p] = true
				}
			}
			var list []string
			for p := range purposes {
				list = append(list, p)
			}
			if _, err := policy.NewM2(mapEnv(sc.Config), list...); err != nil {
				return fmt.Errorf("plugins.slots.throttle.config: %w", err)
			}
		}
	}
	return nil
}

// mapEnv is a config map as a policy.Env, for checking settings.
type mapEnv map[string]string

func (e mapEnv) Config(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (mapEnv) KVGet(string) int64               { return 0 }
func (mapEnv) KVSet(string, int64)              {}
