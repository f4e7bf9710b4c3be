package agent

import (
	"fmt"
	"slices"
	"time"
)

// pool is one purpose's pool of node processes, as M2 configures it: its limits
// (concurrent nodes, streams per node, memory per node), the FIFO queue of open
// requests that wait for room, and its restart budget. Its mutable fields are
// guarded by the Manager's state lock; it takes no lock itself.
type pool struct {
	purpose    string
	cfg        Pool
	memLimit   int64 // one node's memory limit, bytes
	concurrent int   // most nodes that are not recycling

	queue      []*waiter     // open requests waiting for room, first come first served
	budget     restartBudget // fault restarts: M2's recovery and the intensity limit
	restarting int           // replacements waiting out their backoff or their turn
	respawning int           // replacements started and not yet ready (≤ cfg.Respawnable)
	turns      []respawnTurn // replacements waiting for one of those to be ready, in order
	failed     string        // why the pool takes no stream; "" when healthy
}

// respawnTurn is a replacement waiting for its turn under M2's respawnable: the
// dead node and the streams that move to its replacement.
type respawnTurn struct {
	old     *nodeProc
	orphans []*streamEntry
}

func newPool(purpose string, cfg Pool, memLimit int64, concurrent int) *pool {
	return &pool{purpose: purpose, cfg: cfg, memLimit: memLimit, concurrent: concurrent,
		budget: restartBudget{recovery: cfg.Recovery, intensity: cfg.Intensity}}
}

// waiter is one open request in a pool's queue. ready receives once when room
// was made for it.
type waiter struct {
	ready chan struct{}
}

// enqueue appends w unless limit requests already wait.
func (p *pool) enqueue(w *waiter, limit int) bool {
	if len(p.queue) >= limit {
		return false
	}
	p.queue = append(p.queue, w)
	return true
}

// leave removes w from the queue (its request gave up).
func (p *pool) leave(w *waiter) {
	p.queue = slices.DeleteFunc(p.queue, func(x *waiter) bool { return x == w })
}

// wakeFirst hands the room that was made to the request that has waited longest.
func (p *pool) wakeFirst() {
	if len(p.queue) == 0 {
		return
	}
	w := p.queue[0]
	p.queue = p.queue[1:]
	w.ready <- struct{}{}
}

// warmTarget is how many nodes the pool keeps started even with no stream.
func (p *pool) warmTarget() int { return min(p.cfg.Warm, p.concurrent) }

// roomOn says whether a node carrying streams streams may take one more
// (waitQueue streams per node; 0 = no limit).
func (p *pool) roomOn(streams int) bool { return p.cfg.WaitQueue == 0 || streams < p.cfg.WaitQueue }

// recordFault counts a fault restart against the budget and marks the pool failed
// once the budget is spent. It returns the reason when the pool failed just now.
func (p *pool) recordFault(now time.Time) string {
	reason := p.budget.record(now)
	if reason == "" || p.failed != "" {
		return ""
	}
	p.failed = reason
	return reason
}

// restartBudget limits the restarts after faults: M2's recovery (so many a day,
// counted again from zero on a new local day) and a restart intensity (at most
// MaxRestarts within Period), with an exponential backoff between restarts while
// they repeat.
type restartBudget struct {
	recovery  int
	intensity Intensity

	today    int         // fault restarts since the start of day
	day      time.Time   // the local midnight that today counts from
	restarts []time.Time // fault restarts within the intensity period
	backoff  time.Duration
}

// The backoff between repeated fault restarts: none for the first, then 50 ms,
// doubling to 5 s.
const (
	backoffFirst = 50 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// record counts a fault restart at now and says why the pool must fail, if it must.
func (b *restartBudget) record(now time.Time) string {
	// The budget is set again at local midnight, M2's 00:00: a restart on a
	// later date counts afresh, however long ago the last one was.
	if y, m, d := now.Date(); !b.day.Equal(time.Date(y, m, d, 0, 0, 0, 0, now.Location())) {
		b.day, b.today = time.Date(y, m, d, 0, 0, 0, 0, now.Location()), 0
	}
	b.today++
	if b.today > b.recovery {
		return fmt.Sprintf("%d restarts today, over the recovery budget of %d", b.today, b.recovery)
	}
	b.restarts = append(b.restarts, now)
	cut := now.Add(-b.intensity.Period)
	b.restarts = slices.DeleteFunc(b.restarts, func(t time.Time) bool { return t.Before(cut) })
	if len(b.restarts) > b.intensity.MaxRestarts {
		return fmt.Sprintf("%d restarts within %s, over the intensity limit of %d", len(b.restarts), b.intensity.Period, b.intensity.MaxRestarts)
	}
	return ""
}

// nextDelay is how long to wait before this fault restart; the next one waits
// longer.
func (b *restartBudget) nextDelay() time.Duration {
	d := b.backoff
	b.backoff = min(max(2*b.backoff, backoffFirst), backoffMax)
	return d
}

// settle forgets the backoff once no fault restart happened for a whole
// intensity period.
func (b *restartBudget) settle(now time.Time) {
	if len(b.restarts) == 0 || now.Sub(b.restarts[len(b.restarts)-1]) > b.intensity.Period {
		b.backoff = 0
	}
}
