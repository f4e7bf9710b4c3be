package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm/internal/preempt"
)

// ABI v1 export names.
const (
	exportVersion  = "sluice_abi_version"
	exportAlloc    = "sluice_alloc"
	exportRoute    = "sluice_route"
	exportThrottle = "sluice_throttle"
	exportAuth     = "sluice_auth"
)

// Errors callers branch on.
var (
	ErrRefused      = errors.New("wasm: module refused")
	ErrOutput       = errors.New("wasm: the module's output is invalid")
	ErrBreakerOpen  = errors.New("wasm: the module is out of service after repeated failures")
	ErrNoSlot       = errors.New("wasm: no such slot")
	ErrClosed       = errors.New("wasm: the policy host is closed")
	ErrNoPrevious   = errors.New("wasm: the slot has no previous module")
	errInstanceBusy = errors.New("wasm: no instance free before the deadline")
)

// ModuleInfo describes a loaded module.
type ModuleInfo struct {
	SHA256   string    `json:"sha256"`
	ABI      int       `json:"abi"`
	Size     int       `json:"size"`
	Source   string    `json:"source"`
	LoadedAt time.Time `json:"loadedAt"`
	Exports  []string  `json:"exports"`
}

// module is one compiled module and its pool of ready instances.
type module struct {
	info ModuleInfo
	wasm []byte // what was compiled: the module rewritten, unless its slot is trusted
	code *code
	slot *slot

	pool     chan *instance
	retired  atomic.Bool
	gone     chan struct{} // closed when retired, wakes callers waiting for an instance
	goneOnce sync.Once
}

// code is a compiled module that module values share: a module loaded again
// while it is the slot's current one runs on the code compiled for it. It is
// held by every module value that may still instantiate it, every instance
// made from it and every instantiation under way; the last to let go closes
// it.
type code struct {
	compiled wazero.CompiledModule
	refs     atomic.Int32
	host     *Host
}

func (c *code) ref() { c.refs.Add(1) }

func (c *code) unref() {
	if c.refs.Add(-1) == 0 {
		// Off the caller's path: the last holder may be a call returning an
		// instance of a retired module.
		go func() {
			_ = c.compiled.Close(context.Background())
			c.host.tidyUp()
		}()
	}
}

// errRetired tells a caller waiting on a module's pool that the module was
// swapped out: it takes the current module instead.
var errRetired = errors.New("wasm: module retired")

// instance is one instantiated guest; not safe for concurrent use.
type instance struct {
	mod   api.Module
	mem   api.Memory
	alloc api.Function
	call  api.Function
	stack []uint64

	// stop is the global the preempt rewrite polls (nil for a trusted module);
	// deadline is the Unix-nano deadline of the call in flight, 0 when idle,
	// or interrupted once the watchdog stopped it.
	stop     api.MutableGlobal
	deadline atomic.Int64

	// in is the guest's input buffer (from sluice_alloc) and its size; the host
	// writes the next input there without asking again when it fits.
	inPtr, inCap uint32
	// enc is where the host encodes inputs for this instance; route knows
	// which candidates the guest holds from its previous route call.
	enc   []byte
	route abi.RouteEncoder
}

// compile compiles and checks a module for a slot: ABI version, exports with the
// right signatures. It does not instantiate the pool.
func (s *slot) compile(ctx context.Context, b []byte, sum string, source string) (*module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: %s is not a WebAssembly module (bad magic number)", ErrRefused, source)
	}
	wasm := b
	if !s.cfg.Trusted {
		var err error
		if wasm, err = s.host.rewrites.of(b, sum); err != nil {
			return nil, fmt.Errorf("%w: %s: %v (a slot with trusted: true runs modules without this rewrite)", ErrRefused, source, err)
		}
	}
	return s.compileWasm(ctx, wasm, ModuleInfo{SHA256: sum, Size: len(b), Source: source})
}

// compileWasm compiles wasm, the module described by info as the slot runs it,
// and checks its exports.
func (s *slot) compileWasm(ctx context.Context, wasm []byte, info ModuleInfo) (*module, error) {
	source := info.Source
	cm, err := s.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: compile %s: %v", ErrRefused, source, err)
	}
	info.Exports = nil
	m := &module{wasm: wasm, code: &code{compiled: cm, host: s.host}, slot: s, gone: make(chan struct{}), info: info}
	m.code.refs.Store(1)
	exports := cm.ExportedFunctions()
	for name := range exports {
		if name == preempt.ExportName {
			continue // the host's, not the module's
		}
		m.info.Exports = append(m.info.Exports, name)
	}
	slices.Sort(m.info.Exports)
	want := map[string]struct{ params, results []api.ValueType }{
		exportVersion: {nil, []api.ValueType{api.ValueTypeI32}},
		exportAlloc:   {[]api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
		s.export:      {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}},
	}
	for name, sig := range want {
		def, ok := exports[name]
		if !ok {
			cm.Close(ctx)
			return nil, fmt.Errorf("%w: %s does not export %s, which the %s slot needs (ABI v%d)", ErrRefused, source, name, s.name, abi.Version)
		}
		if !slices.Equal(def.ParamTypes(), sig.params) || !slices.Equal(def.ResultTypes(), sig.results) {
			cm.Close(ctx)
			return nil, fmt.Errorf("%w: %s exports %s with signature %v → %v, want %v → %v", ErrRefused, source, name,
				typeNames(def.ParamTypes()), typeNames(def.ResultTypes()), typeNames(sig.params), typeNames(sig.results))
		}
	}
	return m, nil
}

func typeNames(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// instantiate makes one instance: runs _initialize and checks the ABI version.
func (m *module) instantiate(ctx context.Context) (*instance, error) {
	m.code.ref() // the instance's, or the failed instantiation's until it returns
	in, err := m.instantiateCode(ctx)
	if err != nil {
		m.code.unref()
		return nil, err
	}
	if in.stop != nil {
		m.slot.host.dog.add(in)
	}
	return in, nil
}

func (m *module) instantiateCode(ctx context.Context) (*instance, error) {
	var in *instance
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().WithNanosleep(func(ns int64) {
		// A guest's sleep ends at its call's deadline at the latest, so the
		// watchdog's stop reaches it; the rewrite cannot poll inside a sleep.
		if in != nil {
			if d := in.deadline.Load(); d > 0 {
				ns = min(ns, max(d-time.Now().UnixNano(), 0))
			}
		}
		time.Sleep(time.Duration(ns))
	})
	mod, err := m.slot.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, guestMemory), m.code.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: instantiate %s: %v", ErrRefused, m.info.Source, err)
	}
	in = &instance{mod: mod, mem: mod.Memory(), alloc: mod.ExportedFunction(exportAlloc), call: mod.ExportedFunction(m.slot.export), stack: make([]uint64, 2)}
	if in.mem == nil {
		mod.Close(ctx)
		return nil, fmt.Errorf("%w: %s has no memory", ErrRefused, m.info.Source)
	}
	if !m.slot.cfg.Trusted { // the code was rewritten to poll the stop global
		g, ok := mod.ExportedGlobal(preempt.ExportName).(api.MutableGlobal)
		if !ok {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: %s: the preempt global is missing", ErrRefused, m.info.Source)
		}
		in.stop = g
	}
	ver := mod.ExportedFunction(exportVersion)
	if err := ver.CallWithStack(ctx, in.stack); err != nil {
		mod.Close(ctx)
		return nil, fmt.Errorf("%w: %s: %s trapped: %v", ErrRefused, m.info.Source, exportVersion, err)
	}
	if v := int32(in.stack[0]); v != abi.Version {
		mod.Close(ctx)
		return nil, fmt.Errorf("%w: %s speaks ABI v%d; this host speaks v%d", ErrRefused, m.info.Source, v, abi.Version)
	}
	return in, nil
}

// fill makes m's pool, of n instances, with one ready: the dry run's, and the
// one the first calls after the swap share while grow makes the others.
func (m *module) fill(ctx context.Context, n int) error {
	m.pool = make(chan *instance, n)
	in, err := m.instantiate(ctx)
	if err != nil {
		m.retire()
		return err
	}
	m.pool <- in
	// Set here, before the module is current, not in instantiate: replacements
	// are instantiated while Status reads info.
	m.info.ABI = abi.Version
	return nil
}

// grow instantiates the rest of m's pool once m is current, so that a swap
// waits for one instantiation, not the pool's (a Go guest's takes 3.5–10 ms).
// Calls meanwhile share the instances ready, each waiting microseconds for
// the one before. It stops when m is retired or the host closes.
func (m *module) grow() {
	h := m.slot.host
	if !h.gate.enter() { // Close waits for it: its instances live in the runtimes Close closes
		return
	}
	m.code.ref() // while it instantiates
	go func() {
		defer h.gate.leave()
		defer m.code.unref()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range cap(m.pool) - 1 { // fill made one
			select {
			case <-h.closing:
				return
			case <-m.gone:
				return
			default:
			}
			in, err := m.instantiate(ctx)
			if err != nil {
				h.log.Warn("wasm: filling the pool failed; it stays smaller", "slot", m.slot.name, "err", err)
				return
			}
			m.put(in)
		}
	}()
}

// get takes a ready instance, waiting until ctx ends or the deadline passes.
func (m *module) get(ctx context.Context, deadline time.Time) (*instance, error) {
	select {
	case in := <-m.pool:
		return in, nil
	default:
	}
	t := time.NewTimer(time.Until(deadline)) // only when the pool is empty
	defer t.Stop()
	select {
	case in := <-m.pool:
		return in, nil
	case <-m.gone:
		return nil, errRetired
	case <-ctx.Done():
		return nil, errInstanceBusy
	case <-t.C:
		return nil, errInstanceBusy
	}
}

// put returns a healthy instance; a retired module's instances are closed.
func (m *module) put(in *instance) {
	if m.retired.Load() {
		m.closeInstance(in)
		return
	}
	select {
	case m.pool <- in:
	default:
		m.closeInstance(in)
	}
	if m.retired.Load() { // retired while we put it back
		m.drain()
	}
}

// discard closes a broken instance and makes a replacement off the call path.
// The replacement holds the host's gate while it instantiates: a Go guest's
// start-up writes its memory for milliseconds, and a runtime closed under it
// frees that memory, which faults the process (RATIONALE.md, Hot swap and
// memory).
func (m *module) discard(in *instance) {
	h := m.slot.host
	if m.retired.Load() || !h.gate.enter() {
		m.closeInstance(in)
		return
	}
	m.code.ref() // in's ref goes; the replacement's instantiation holds this one
	m.closeInstance(in)
	go func() {
		defer h.gate.leave()
		defer m.code.unref()
		select {
		case <-h.closing:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fresh, err := m.instantiate(ctx)
		if err != nil {
			h.log.Warn("wasm: replacing an instance failed", "slot", m.slot.name, "err", err)
			return
		}
		m.put(fresh)
	}()
}

func (m *module) closeInstance(in *instance) {
	if in.stop != nil {
		m.slot.host.dog.remove(in)
	}
	_ = in.mod.Close(context.Background())
	m.code.unref()
}

// retire takes the module out of service: idle instances close now, busy ones
// when their calls finish.
func (m *module) retire() {
	m.retired.Store(true)
	m.goneOnce.Do(func() { close(m.gone) })
	m.drain()
}

// again makes a fresh module value on m's compiled code, loaded from source:
// m may be retired, and may still be seen by callers that raced its swap.
func (m *module) again(source string) *module {
	m.code.ref()
	a := &module{info: m.info, wasm: m.wasm, code: m.code, slot: m.slot, gone: make(chan struct{})}
	a.info.Source = source
	return a
}

func (m *module) drain() {
	for {
		select {
		case in := <-m.pool:
			m.closeInstance(in)
		default:
			return
		}
	}
}

// release retires m and lets go of its hold on its compiled code, which
// closes once every instance made from it is closed too. Every module value
// is released once, when it stops being current or fails to become current.
func (m *module) release() {
	m.retire()
	m.code.unref()
}

// invoke runs the slot's export on input in one instance, armed with the
// watchdog until deadline, and returns the output as a view of guest memory,
// valid until the instance's next call. A trap or a deadline leaves the instance
// unusable: the caller discards it when err is a call failure.
func (in *instance) invoke(ctx context.Context, dog *watchdog, input []byte, maxOut int, deadline time.Time) ([]byte, error) {
	if in.stop != nil {
		dog.arm(in, deadline)
	}
	out, err := in.run(ctx, input, maxOut)
	if in.stop != nil && dog.disarm(in) {
		return nil, errDeadline
	}
	return out, err
}

// errDeadline is a call the watchdog stopped.
var errDeadline = errors.New("wasm: stopped at its deadline")

func (in *instance) run(ctx context.Context, input []byte, maxOut int) ([]byte, error) {
	if in.inCap == 0 || uint32(len(input)) > in.inCap {
		// The guest's buffer stays valid until the next sluice_alloc (ABI.md),
		// so it is asked for one only when the input outgrows it.
		size := uint32(max(len(input), 1024))
		in.stack[0] = uint64(size)
		if err := in.alloc.CallWithStack(ctx, in.stack); err != nil {
			in.inCap = 0
			return nil, err
		}
		in.inPtr, in.inCap = uint32(in.stack[0]), size
	}
	if !in.mem.Write(in.inPtr, input) {
		return nil, fmt.Errorf("%w: sluice_alloc returned %d, outside memory", ErrOutput, in.inPtr)
	}
	in.stack[0], in.stack[1] = uint64(in.inPtr), uint64(len(input))
	if err := in.call.CallWithStack(ctx, in.stack); err != nil {
		return nil, err
	}
	packed := in.stack[0]
	optr, olen := uint32(packed>>32), uint32(packed)
	if olen == 0 {
		return nil, fmt.Errorf("%w: empty output", ErrOutput)
	}
	if int(olen) > maxOut {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrOutput, olen, maxOut)
	}
	b, ok := in.mem.Read(optr, olen)
	if !ok {
		return nil, fmt.Errorf("%w: output at %d+%d is outside memory", ErrOutput, optr, olen)
	}
	return b, nil
}

// decodeRoute decodes a route output, reading agents the guest answered by
// reference from its memory (at most max bytes of them).
func (in *instance) decodeRoute(out []byte, ro *abi.RouteOutput, max int) error {
	mem, _ := in.mem.Read(0, in.mem.Size()) // a view of all of it
	return abi.DecodeRouteOutputFrom(out, mem, max, ro)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
