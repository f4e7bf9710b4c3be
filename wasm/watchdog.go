package wasm

import (
	"sync"
	"sync/atomic"
	"time"
)

// watchdog stops guest calls that outlive their deadline. Interruptible modules
// are rewritten (package preempt) to poll a stop global at every function entry
// and loop header; the watchdog sets that global on an instance whose call is
// past its deadline, and the guest traps at its next poll.
//
// A call costs the watchdog two atomic operations: it arms its instance with a
// deadline and disarms it when the call returns. The watchdog's goroutine sleeps
// while no call is armed and ticks every `tick` while some are, so an idle host
// has no timer running and a runaway call stops within its deadline plus one tick.
type watchdog struct {
	tick time.Duration

	mu    sync.Mutex
	insts map[*instance]struct{} // interruptible instances, live

	armed atomic.Int64  // calls in flight
	wake  chan struct{} // capacity 1: a call armed while the watchdog slept
	stop  chan struct{}
}

// interrupted is what an instance's deadline word holds once the watchdog has
// stopped its call.
const interrupted = -1

func newWatchdog(tick time.Duration, stop chan struct{}) *watchdog {
	return &watchdog{tick: tick, insts: map[*instance]struct{}{}, wake: make(chan struct{}, 1), stop: stop}
}

func (w *watchdog) add(in *instance) {
	w.mu.Lock()
	w.insts[in] = struct{}{}
	w.mu.Unlock()
}

func (w *watchdog) remove(in *instance) {
	w.mu.Lock()
	delete(w.insts, in)
	w.mu.Unlock()
}

// arm records that in runs a call that must end by deadline.
func (w *watchdog) arm(in *instance, deadline time.Time) {
	in.deadline.Store(deadline.UnixNano())
	if w.armed.Add(1) == 1 {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// disarm records that in's call returned, and reports whether the watchdog
// stopped it. A stopped instance must be discarded: its stop global stays set.
func (w *watchdog) disarm(in *instance) (stopped bool) {
	w.armed.Add(-1)
	return in.deadline.Swap(0) == interrupted
}

// run is the watchdog's goroutine; it returns when stop is closed.
func (w *watchdog) run() {
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		t := time.NewTicker(w.tick)
		for w.armed.Load() > 0 {
			select {
			case <-w.stop:
				t.Stop()
				return
			case now := <-t.C:
				w.scan(now.UnixNano())
			}
		}
		t.Stop()
	}
}

// scan stops every call past its deadline.
func (w *watchdog) scan(now int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for in := range w.insts {
		d := in.deadline.Load()
		if d > 0 && now > d && in.deadline.CompareAndSwap(d, interrupted) {
			// The CAS makes this the call that was past its deadline: had it
			// returned meanwhile, the word would be 0 or a later call's deadline.
			in.stop.Set(1)
		}
	}
}

// watchdogTick is a tenth of the shortest slot deadline, within [1ms, 10ms].
func watchdogTick(cfg Config) time.Duration {
	tick := 10 * time.Millisecond
	for _, sc := range cfg.Slots {
		if sc.Deadline > 0 {
			tick = min(tick, sc.Deadline/10)
		}
	}
	return max(tick, time.Millisecond)
}
