// Package wasm is sluice's policy host: it runs operator-supplied WebAssembly
// policies in named slots (route, throttle, auth) on wazero, with a bounded pool of
// instances per slot, per-slot memory and time limits, a failure setting and
// native fallback per slot, a crash-loop breaker, and atomic hot swap with
// rollback. It knows no particular policy: the program hands in the modules
// it ships, each slot's default module and the native fallbacks (Config).
// The guest ABI is documented in ABI.md; RATIONALE.md says why the host is
// built this way.
package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Host runs the policy slots.
type Host struct {
	cfg      Config
	log      *slog.Logger
	set      *metrics.Set
	cache    wazero.CompilationCache
	slots    map[string]*slot
	dog      *watchdog     // stops calls of interruptible modules at their deadline
	rewrites rewrites      // of the modules rewritten last
	tidy     chan struct{} // capacity 1: compiled code was closed (tidyUp)
	// swapping counts the swaps under way and swapped is when the last one
	// ended (Unix nanoseconds): the tidier waits for a quiet spell.
	swapping atomic.Int32
	swapped  atomic.Int64

	// closing is closed first by Close, so that work that may wait (pool
	// growth, replacements) stops early; stop, once the gate is shut, ends the
	// host's own goroutines (the watchdog runs until then: it stops runaway
	// calls Close waits for).
	closing chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  sync.Once
	gate    gate // what runs guest code: calls, swaps, pool growth, replacements
}

// gate lets everything that runs guest code in until Close, which waits for
// what is in before it closes the runtimes: calls, swaps, a new module's pool
// filling and a trapped instance's replacement. Closing a runtime closes every
// instance, and an instance's memory is its own mapping (memory_unix.go),
// freed as it closes: a guest still running in it, a call or a Go guest's
// start-up, would fault the whole process (tests that closed their host under
// either did).
type gate struct {
	mu     sync.RWMutex
	closed bool
	busy   sync.WaitGroup
}

func (g *gate) enter() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	g.busy.Add(1)
	return true
}

func (g *gate) leave() { g.busy.Done() }

// shut lets nothing in any more and waits for what is in: calls end by their
// deadlines, swaps by their compile and dry run.
func (g *gate) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.busy.Wait()
}

// New starts the host and loads every slot's module (its default module when
// the config names none). It refuses a config that Validate refuses.
func New(ctx context.Context, cfg Config, log *slog.Logger, set *metrics.Set) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set == nil {
		set = metrics.NewSet()
	}
	if cfg.KeepPrevious == 0 {
		cfg.KeepPrevious = 10 * time.Second
	}
	dir := cfg.CacheDir
	if dir == "" {
		if base, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(base, "sluice", "wazero")
		} else {
			dir = filepath.Join(os.TempDir(), "sluice-wazero")
		}
	}
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wasm: compilation cache %s: %w", dir, err)
	}
	h := &Host{cfg: cfg, log: log, set: set, cache: cache, slots: map[string]*slot{}, closing: make(chan struct{}), stop: make(chan struct{}), tidy: make(chan struct{}, 1)}
	h.dog = newWatchdog(watchdogTick(cfg), h.stop)
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.dog.run() }()
	h.wg.Add(1)
	go h.tidier()
	for _, name := range slotNames {
		sc, err := cfg.slot(name)
		if err != nil {
			h.Close(ctx)
			return nil, err
		}
		s, err := h.newSlot(ctx, name, sc)
		if err != nil {
			h.Close(ctx)
			return nil, err
		}
		h.slots[name] = s
		if sc.Module == "" {
			continue // no module until one is loaded; calls follow the failure setting
		}
		b, err := h.readModule(sc.Module)
		if err == nil {
			_, err = s.load(ctx, b, sc.Module)
		}
		if err != nil {
			h.Close(ctx)
			return nil, fmt.Errorf("wasm: slot %s: %w", name, err)
		}
	}
	set.RegisterMetricsWriter(h.writeMetrics)
	if cfg.Dir != "" {
		h.wg.Add(1)
		go h.watch()
	}
	return h, nil
}

// readModule reads "builtin:NAME" (one of the config's built-ins) or a file.
func (h *Host) readModule(spec string) ([]byte, error) {
	if name, ok := strings.CutPrefix(spec, "builtin:"); ok {
		if b := h.cfg.Builtins[name].Module; b != nil {
			return b, nil
		}
		return nil, fmt.Errorf("%w: no built-in policy %q", ErrRefused, name)
	}
	return os.ReadFile(spec)
}

func (h *Host) newSlot(ctx context.Context, name string, sc SlotConfig) (*slot, error) {
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(h.cache).
		WithMemoryLimitPages(sc.MemoryPages).
		// Runaway guests are stopped by the preempt rewrite and the watchdog,
		// at a fraction of this setting's cost (RATIONALE.md).
		WithCloseOnContextDone(false)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	s := &slot{host: h, name: name, cfg: sc, rt: rt, kv: newKVStore(10000), guest: guestMetrics{set: h.set, slot: name},
		callHist: h.set.NewPrometheusHistogramExt(fmt.Sprintf(`sluice_plugin_call_duration_seconds{slot=%q}`, name), callBuckets)}
	s.export = map[string]string{SlotRoute: exportRoute, SlotThrottle: exportThrottle, SlotAuth: exportAuth}[name]
	if err := s.hostModule(ctx); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return s, nil
}

// hostModule provides the ABI v1 imports (module "sluice") to this slot's guests.
func (s *slot) hostModule(ctx context.Context) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	// i32 arguments arrive in uint64 stack slots whose upper 32 bits are not
	// defined: always narrow them with uint32 before use.
	str := func(m api.Module, ptr, n uint64) (string, bool) {
		if uint32(n) > 4096 {
			return "", false
		}
		b, ok := m.Memory().Read(uint32(ptr), uint32(n))
		return string(b), ok
	}
	b := s.rt.NewHostModuleBuilder("sluice")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		if msg, ok := str(m, st[1], st[2]); ok {
			s.host.log.Log(context.Background(), slog.Level(int32(st[0])), "policy: "+msg, "slot", s.name)
		}
	}), []api.ValueType{i32, i32, i32}, nil).Export("log")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, st []uint64) {
		st[0] = uint64(time.Now().UnixNano())
	}), nil, []api.ValueType{i64}).Export("now")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		key, ok := str(m, st[0], st[1])
		v, found := s.cfg.Config[key]
		if !ok || !found {
			st[0] = uint64(^uint32(0)) // -1
			return
		}
		if len(v) <= int(uint32(st[3])) && !m.Memory().Write(uint32(st[2]), []byte(v)) {
			st[0] = uint64(^uint32(0))
			return
		}
		st[0] = uint64(uint32(len(v)))
	}), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).Export("config_get")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		key, ok := str(m, st[0], st[1])
		if !ok {
			st[0] = 0
			return
		}
		st[0] = uint64(s.kv.add(key, int64(st[2])))
	}), []api.ValueType{i32, i32, i64}, []api.ValueType{i64}).Export("kv_add")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		key, ok := str(m, st[0], st[1])
		if !ok {
			st[0] = 0
			return
		}
		st[0] = uint64(s.kv.get(key))
	}), []api.ValueType{i32, i32}, []api.ValueType{i64}).Export("kv_get")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		if key, ok := str(m, st[0], st[1]); ok {
			s.kv.set(key, int64(st[2]))
		}
	}), []api.ValueType{i32, i32, i64}, nil).Export("kv_set")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		if name, ok := str(m, st[0], st[1]); ok && validMetricName(name) {
			s.guest.add(name, int64(st[2]))
		}
	}), []api.ValueType{i32, i32, i64}, nil).Export("metric_add")
	_, err := b.Instantiate(ctx)
	return err
}

func validMetricName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Route ranks agents for a stream with the route slot, following the slot's
// failure setting when the module cannot decide. The error is non-nil only when
// the failure setting has nothing to offer either.
func (h *Host) Route(ctx context.Context, in *abi.RouteInput) (abi.RouteOutput, error) {
	s := h.slots[SlotRoute]
	var ro abi.RouteOutput
	err := s.call(ctx,
		func(inst *instance, b []byte) []byte { return inst.route.Append(b, in) },
		func(inst *instance, out []byte) error { return inst.decodeRoute(out, &ro, s.cfg.MaxOutput) })
	if err == nil {
		return ro, nil
	}
	s.fallbacks.Add(1)
	ro = abi.RouteOutput{} // a failed decode may have filled part of it
	switch s.cfg.Failure {
	case FailOpen:
		for _, c := range in.Candidates {
			ro.Agents = append(ro.Agents, c.ID)
		}
		return ro, nil
	case FailClosed:
		return abi.RouteOutput{Reject: &abi.Rejection{Status: 503, Reason: "route policy failed: " + err.Error()}}, nil
	}
	return h.cfg.Fallback.Route(in), nil // Validate made sure it is set
}

// Throttle decides admission with the throttle slot, following the slot's
// failure setting when the module cannot decide.
func (h *Host) Throttle(ctx context.Context, in *abi.ThrottleInput) (abi.ThrottleOutput, error) {
	s := h.slots[SlotThrottle]
	var to abi.ThrottleOutput
	err := s.call(ctx,
		func(_ *instance, b []byte) []byte { return abi.AppendThrottleInput(b, in) },
		func(_ *instance, out []byte) error { return abi.DecodeThrottleOutput(out, &to) })
	if err == nil {
		return to, nil
	}
	s.fallbacks.Add(1)
	switch s.cfg.Failure {
	case FailOpen:
		return abi.ThrottleOutput{Action: abi.Admit}, nil
	case FailClosed:
		return abi.ThrottleOutput{Action: abi.Reject, Status: 503, ContentType: "text/plain", Body: []byte("throttle policy failed\n")}, nil
	}
	return h.cfg.Fallback.Throttle(slotEnv{s}, in), nil // Validate made sure it is set
}

// Authorize allows or denies a request with the auth slot, following the
// slot's failure setting when the module cannot decide (open allows, closed
// denies with 503). A slot with no module decides by its failure setting too.
func (h *Host) Authorize(ctx context.Context, in *abi.AuthInput) (abi.AuthOutput, error) {
	s := h.slots[SlotAuth]
	var ao abi.AuthOutput
	err := s.call(ctx,
		func(_ *instance, b []byte) []byte { return abi.AppendAuthInput(b, in) },
		func(_ *instance, out []byte) error { return abi.DecodeAuthOutput(out, &ao) })
	if err == nil {
		return ao, nil
	}
	s.fallbacks.Add(1)
	switch s.cfg.Failure {
	case FailOpen:
		return abi.AuthOutput{Allow: true}, nil
	case FailClosed:
		return abi.AuthOutput{Status: 503, Reason: "auth policy failed"}, nil
	}
	return h.cfg.Fallback.Auth(slotEnv{s}, in), nil // Validate made sure it is set
}

// slotEnv is a slot's config and shared store, for its native fallback.
type slotEnv struct{ s *slot }

func (e slotEnv) Config(k string) (string, bool) { v, ok := e.s.cfg.Config[k]; return v, ok }
func (e slotEnv) KVGet(k string) int64           { return e.s.kv.get(k) }
func (e slotEnv) KVSet(k string, v int64)        { e.s.kv.set(k, v) }

var _ Env = slotEnv{}

// Load replaces a slot's module: it is compiled, checked and dry-run first, and
// the current module stays when any of that fails.
func (h *Host) Load(ctx context.Context, slotName string, b []byte, source string) (ModuleInfo, error) {
	s := h.slots[slotName]
	if s == nil {
		return ModuleInfo{}, fmt.Errorf("%w: %q", ErrNoSlot, slotName)
	}
	if !h.gate.enter() {
		return ModuleInfo{}, ErrClosed
	}
	defer h.gate.leave()
	info, err := s.load(ctx, b, source)
	if err != nil {
		msg := "load " + source + ": " + err.Error()
		s.lastErr.Store(&msg) // visible in GET /v1/plugins
		h.log.Warn("wasm: module refused; the current one stays", "slot", slotName, "source", source, "err", err)
	}
	return info, err
}

// Rollback makes a slot's previous module current again.
func (h *Host) Rollback(ctx context.Context, slotName string) (ModuleInfo, error) {
	s := h.slots[slotName]
	if s == nil {
		return ModuleInfo{}, fmt.Errorf("%w: %q", ErrNoSlot, slotName)
	}
	if !h.gate.enter() {
		return ModuleInfo{}, ErrClosed
	}
	defer h.gate.leave()
	return s.rollback(ctx)
}

// watch loads SLOT.wasm files from cfg.Dir when they appear or change.
func (h *Host) watch() {
	defer h.wg.Done()
	type seen struct {
		mod  time.Time
		size int64
	}
	last := map[string]seen{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		for name, s := range h.slots {
			path := filepath.Join(h.cfg.Dir, name+".wasm")
			fi, err := os.Stat(path)
			if err != nil {
				continue
			}
			now := seen{fi.ModTime(), fi.Size()}
			if last[name] == now {
				continue
			}
			b, err := os.ReadFile(path)
			if err != nil || len(b) != int(fi.Size()) {
				continue // being written; next tick
			}
			last[name] = now
			if cur := s.cur.Load(); cur != nil && cur.info.SHA256 == sha(b) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, _ = h.Load(ctx, name, b, path)
			cancel()
		}
	}
}

// tidyUp asks the tidier to give the memory of closed code back to the
// system; requests made while it works are served by its next round.
func (h *Host) tidyUp() {
	select {
	case h.tidy <- struct{}{}:
	default:
	}
}

// swapBegins marks a swap under way until the function it returns is called.
func (h *Host) swapBegins() (ends func()) {
	h.swapping.Add(1)
	return func() {
		h.swapped.Store(time.Now().UnixNano())
		h.swapping.Add(-1)
	}
}

// tidier returns the memory of modules that left their slot to the system,
// rather than when the Go heap gets round to it. A Go guest's compiled module
// is ~10 MiB of machine code, which wazero unmaps in a finalizer, and as much
// Go heap, which that finalizer keeps alive for one more collection: left to
// the pacer, a few swaps grew the heap's goal to twice that garbage and the
// process by half again (RATIONALE.md, Hot swap and memory). Once a module's
// code is closed it waits until no swap has run for tidyDelay, so that swaps
// in a burst share one round and no swap competes with its collections (they
// stretched swaps under way several times over), then runs two full
// collections (the first runs the finalizers) and returns the free heap.
func (h *Host) tidier() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case <-h.tidy:
		}
		for wait := tidyDelay; wait > 0; {
			select {
			case <-h.stop:
				return
			case <-time.After(wait):
			}
			wait = tidyDelay
			if h.swapping.Load() == 0 {
				wait -= time.Since(time.Unix(0, h.swapped.Load()))
			}
		}
		runtime.GC()
		debug.FreeOSMemory()
	}
}

// tidyDelay is how long the tidier waits after compiled code was closed, and
// how long no swap must have run before it tidies.
const tidyDelay = time.Second

// Close stops the host. It is safe to call twice.
func (h *Host) Close(ctx context.Context) error {
	h.closed.Do(func() {
		close(h.closing)
		h.gate.shut()
		close(h.stop)
		h.wg.Wait()
		for _, s := range h.slots {
			s.swapMu.Lock()
			if s.forget != nil {
				s.forget.Stop()
			}
			s.swapMu.Unlock()
			_ = s.rt.Close(ctx)
		}
		_ = h.cache.Close(ctx)
	})
	return nil
}

// kvStore is a slot's shared key/value store, bounded in keys.
type kvStore struct {
	mu  sync.Mutex
	m   map[string]int64
	max int
}

func newKVStore(max int) *kvStore { return &kvStore{m: map[string]int64{}, max: max} }

func (k *kvStore) add(key string, d int64) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok && len(k.m) >= k.max {
		return 0
	}
	v += d
	k.m[key] = v
	return v
}

func (k *kvStore) get(key string) int64 { k.mu.Lock(); defer k.mu.Unlock(); return k.m[key] }

func (k *kvStore) set(key string, v int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.m[key]; !ok && len(k.m) >= k.max {
		return
	}
	k.m[key] = v
}
