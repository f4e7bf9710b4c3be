package wasm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/tetratelabs/wazero"

	"github.com/sluicegw/sluice/sdk/abi"
)

// slot is a named place for one policy module, with its own wazero runtime (so
// its memory limit is its own), its current and previous module, its failure
// setting and its statistics.
type slot struct {
	host   *Host
	name   string
	export string
	cfg    SlotConfig
	rt     wazero.Runtime
	kv     *kvStore

	swapMu sync.Mutex // serialises swaps
	cur    atomic.Pointer[module]
	prev   *module // guarded by swapMu: what a rollback goes back to
	// prevKept (guarded by swapMu) is whether prev still holds its compiled
	// code, which it does for keepPrevious after it leaves (forget).
	prevKept bool
	forget   *time.Timer

	calls, traps, fallbacks, swaps atomic.Uint64
	lat                            latencies
	callHist                       *metrics.PrometheusHistogram
	guest                          guestMetrics // the guest's own series (metric_add)

	brMu      sync.Mutex
	failures  int
	openUntil time.Time
	backoff   time.Duration
	lastErr   atomic.Pointer[string]
	failing   atomic.Bool // set by fail, cleared by ok: lets ok and breakerOpen skip brMu
}

// call runs the module on one input: encode appends the input to a buffer the
// instance keeps, and decode reads the output, a view of guest memory that is
// valid only while decode runs. On any failure it returns the error; the caller
// applies the failure setting.
func (s *slot) call(ctx context.Context, encode func(in *instance, b []byte) []byte, decode func(in *instance, out []byte) error) error {
	if !s.host.gate.enter() {
		return ErrClosed // the failure setting decides, as for any call that cannot run
	}
	defer s.host.gate.leave()
	s.calls.Add(1)
	if s.breakerOpen() {
		return ErrBreakerOpen
	}
	start := time.Now()
	deadline := start.Add(s.cfg.Deadline)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var m *module
	var in *instance
	for {
		m = s.cur.Load()
		if m == nil {
			return fmt.Errorf("%w: slot %s has no module", ErrRefused, s.name)
		}
		var err error
		in, err = m.get(ctx, deadline)
		if err == nil {
			break
		}
		if !errors.Is(err, errRetired) {
			s.fail(err)
			return err
		}
		// Swapped out while we waited: take the new current module.
	}
	in.enc = encode(in, in.enc[:0])
	out, err := in.invoke(ctx, s.host.dog, in.enc, s.cfg.MaxOutput, deadline)
	if err == nil {
		if derr := decode(in, out); derr != nil {
			err = fmt.Errorf("%w: %v", ErrOutput, derr)
		}
	}
	d := time.Since(start)
	s.lat.add(d)
	s.callHist.Update(d.Seconds())
	if err == nil {
		in.route.Commit()
	} else {
		in.route.Reset() // what the guest holds is unknown
	}
	switch {
	case err == nil:
		m.put(in)
		s.ok()
		return nil
	case errors.Is(err, ErrOutput):
		m.put(in)
	default: // trap, deadline, or exit: the instance is unusable
		s.traps.Add(1)
		m.discard(in)
		if errors.Is(err, errDeadline) {
			err = fmt.Errorf("wasm: call exceeded the %s deadline: %w", s.cfg.Deadline, err)
		} else {
			err = fmt.Errorf("wasm: call trapped: %w", err)
		}
	}
	s.fail(err)
	return err
}

func (s *slot) breakerOpen() bool {
	if s.cfg.BreakerFailures < 0 || !s.failing.Load() {
		return false
	}
	s.brMu.Lock()
	defer s.brMu.Unlock()
	return time.Now().Before(s.openUntil)
}

func (s *slot) ok() {
	if !s.failing.Load() {
		return // the common case costs no lock
	}
	s.failing.Store(false)
	s.brMu.Lock()
	s.failures = 0
	s.backoff = 0
	s.brMu.Unlock()
}

func (s *slot) fail(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
	if s.cfg.BreakerFailures < 0 {
		return
	}
	s.brMu.Lock()
	defer s.brMu.Unlock()
	s.failing.Store(true)
	s.failures++
	if s.failures >= s.cfg.BreakerFailures {
		if s.backoff == 0 {
			s.backoff = s.cfg.BreakerBackoff
		} else {
			s.backoff = min(2*s.backoff, time.Minute)
		}
		s.openUntil = time.Now().Add(s.backoff)
		s.failures = 0
		s.host.log.Warn("wasm: module out of service after repeated failures; the slot falls back",
			"slot", s.name, "for", s.backoff, "last error", msg)
	}
}

// load compiles, checks, dry-runs and instantiates a module, then makes it
// current. The old module finishes its calls in flight and is then closed. A
// module that is the current or previous one again is not rewritten again,
// nor compiled while its code is kept.
func (s *slot) load(ctx context.Context, b []byte, source string) (ModuleInfo, error) {
	defer s.host.swapBegins()()
	sum := sha(b)
	m, err := s.again(ctx, sum, source)
	if m == nil && err == nil {
		m, err = s.compile(ctx, b, sum, source)
	}
	if err != nil {
		return ModuleInfo{}, err
	}
	if err := s.activate(ctx, m); err != nil {
		m.release()
		return ModuleInfo{}, err
	}
	return m.info, nil
}

// again is the module whose sha256 is sum when it is the current one or the
// previous one, on the code compiled for it when that is kept, or compiled
// again from what the slot compiled before (no rewrite); or nil.
func (s *slot) again(ctx context.Context, sum, source string) (*module, error) {
	s.swapMu.Lock()
	cur := s.cur.Load()
	if cur != nil && cur.info.SHA256 == sum {
		defer s.swapMu.Unlock() // cur's code is not let go of meanwhile
		return cur.again(source), nil
	}
	s.swapMu.Unlock()
	return s.previous(ctx, sum, source)
}

// previous is the previous module as a new module value loaded from source,
// if its sha256 is sum (any, when sum is empty); or nil.
func (s *slot) previous(ctx context.Context, sum, source string) (*module, error) {
	s.swapMu.Lock()
	p, kept := s.prev, s.prevKept
	if p == nil || sum != "" && p.info.SHA256 != sum {
		s.swapMu.Unlock()
		return nil, nil
	}
	if kept {
		defer s.swapMu.Unlock() // its code is not let go of meanwhile
		return p.again(source), nil
	}
	s.swapMu.Unlock()
	info := p.info
	info.Source = source
	return s.compileWasm(ctx, p.wasm, info)
}

// activate instantiates m, dry-runs it and swaps it in.
func (s *slot) activate(ctx context.Context, m *module) error {
	if err := m.fill(ctx, s.cfg.Pool); err != nil {
		return err
	}
	if err := s.dryRun(ctx, m); err != nil {
		m.retire()
		return err
	}
	m.info.LoadedAt = time.Now()
	s.swapMu.Lock()
	old := s.cur.Swap(m)
	var displaced *module // the previous module, if it still holds its code
	if old != nil {
		if s.prevKept {
			displaced = s.prev
		}
		s.prev, s.prevKept = old, true
		if s.forget != nil {
			s.forget.Stop()
		}
		s.forget = time.AfterFunc(max(s.host.cfg.KeepPrevious, 0), func() { s.forgetCode(old) })
	}
	s.swapMu.Unlock()
	m.grow()
	if old != nil {
		old.retire() // its instances close as their calls return; its code stays a while
	}
	if displaced != nil {
		displaced.release() // its code stays while m shares it
	}
	s.swaps.Add(1)
	s.brMu.Lock()
	s.failures, s.backoff, s.openUntil = 0, 0, time.Time{}
	s.brMu.Unlock()
	s.host.log.Info("wasm: module loaded", "slot", s.name, "sha256", m.info.SHA256[:12], "source", m.info.Source, "size", m.info.Size)
	return nil
}

// forgetCode lets go of the compiled code of p, if it is still the previous
// module and holds it.
func (s *slot) forgetCode(p *module) {
	s.swapMu.Lock()
	forget := s.prev == p && s.prevKept
	if forget {
		s.prevKept = false
	}
	s.swapMu.Unlock()
	if forget {
		p.release()
	}
}

// dryRun decides a canned input with one of m's instances; the output must decode.
func (s *slot) dryRun(ctx context.Context, m *module) error {
	var input []byte
	switch s.name {
	case SlotThrottle:
		input = abi.AppendThrottleInput(nil, &abi.ThrottleInput{Kind: "publish", StreamID: "dry-run", Path: "/whip/dry-run", Protocol: "whip",
			Pools: []abi.PoolFigures{{Purpose: "relay", Concurrent: 1}}, NowNanos: time.Now().UnixNano()})
	case SlotAuth:
		input = abi.AppendAuthInput(nil, &abi.AuthInput{Kind: "publish", StreamID: "dry-run", Path: "/whip/dry-run", Protocol: "whip",
			Check: "token-missing", NowNanos: time.Now().UnixNano()})
	default:
		input = abi.AppendRouteInput(nil, &abi.RouteInput{StreamID: "dry-run", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay",
			Candidates: []abi.Candidate{{ID: "a", Purposes: []string{"relay"}, Capacity: 10, State: "serving"}}})
	}
	deadline := time.Now().Add(max(s.cfg.Deadline, time.Second))
	in, err := m.get(ctx, deadline)
	if err != nil {
		return fmt.Errorf("%w: dry run: %v", ErrRefused, err)
	}
	out, err := in.invoke(ctx, s.host.dog, input, s.cfg.MaxOutput, deadline)
	if errors.Is(err, errDeadline) {
		err = fmt.Errorf("did not return within %s", max(s.cfg.Deadline, time.Second))
	}
	if err != nil {
		m.closeInstance(in)
		return fmt.Errorf("%w: %s failed its dry run: %v", ErrRefused, m.info.Source, err)
	}
	switch s.name {
	case SlotThrottle:
		var o abi.ThrottleOutput
		err = abi.DecodeThrottleOutput(out, &o)
	case SlotAuth:
		var o abi.AuthOutput
		err = abi.DecodeAuthOutput(out, &o)
	default:
		var o abi.RouteOutput
		err = in.decodeRoute(out, &o, s.cfg.MaxOutput)
	}
	m.put(in)
	if err != nil {
		return fmt.Errorf("%w: %s's dry-run output does not decode: %v", ErrRefused, m.info.Source, err)
	}
	return nil
}

// rollback makes the previous module current again.
func (s *slot) rollback(ctx context.Context) (ModuleInfo, error) {
	defer s.host.swapBegins()()
	s.swapMu.Lock()
	p := s.prev
	s.swapMu.Unlock()
	if p == nil {
		return ModuleInfo{}, fmt.Errorf("%w: %s", ErrNoPrevious, s.name)
	}
	m, err := s.previous(ctx, "", p.info.Source)
	if err == nil && m == nil {
		err = fmt.Errorf("%w: %s", ErrNoPrevious, s.name) // swapped meanwhile
	}
	if err != nil {
		return ModuleInfo{}, err
	}
	if err := s.activate(ctx, m); err != nil {
		m.release()
		return ModuleInfo{}, err
	}
	return m.info, nil
}

// latencies keeps the last calls' durations for percentiles.
type latencies struct {
	buf [1024]atomic.Int64 // nanoseconds; a ring without a lock, which every call would take
	n   atomic.Uint64
}

func (l *latencies) add(d time.Duration) {
	l.buf[(l.n.Add(1)-1)%uint64(len(l.buf))].Store(int64(d))
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	n := int(min(l.n.Load(), uint64(len(l.buf))))
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(l.buf[i].Load())
	}
	if n == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return s[n/2], s[n*99/100]
}
