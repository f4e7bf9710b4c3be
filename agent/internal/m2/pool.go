package m2

import (
	"errors"
	"fmt"
	"time"
)

// Pool is one purpose's process pool, with M2's setting names and meanings.
type Pool struct {
	// Memory is one node's memory limit: "auto", a percentage of auto ("120%"), or
	// a size ("1024m", "2g"). Default "auto". Enforced twice: the node's Go memory
	// limit, and the agent recycles a node whose RSS passes it.
	Memory string
	// Concurrent is the most node processes of the purpose; 0 derives it from the
	// memory budget, never above the CPU count. Recycling nodes do not count.
	Concurrent int
	// WaitQueue is the streams one node serves at once; 0 means no limit.
	WaitQueue int
	// Respawnable is the most nodes restarting at the same moment. Default 1.
	Respawnable int
	// Keepalive recycles nodes by count and age.
	Keepalive Keepalive
	// Recovery is the restarts after faults allowed per day (reset at local
	// midnight), like M2's rt.respawnable.recovery. Default 100.
	Recovery int
	// Intensity limits restarts in a short window: at most MaxRestarts within
	// Period (systemd's default is 5 in 10s), with exponential backoff between
	// restarts once the pool restarts repeatedly. Past it the pool is failed.
	Intensity Intensity
	// Warm is the nodes kept started with no stream, so the first stream does not
	// wait for a spawn. Default 1; -1 means none.
	Warm int
	// Procs is each node's GOMAXPROCS. Default 1: a pool scales across cores with
	// more node processes (concurrent), and one scheduler thread per node avoids the
	// cross-thread wake-ups that dominate a relay's CPU at media packet rates.
	Procs int
}

// Keepalive recycles nodes (M2's process.*.keepalive).
type Keepalive struct {
	MaxCount int           // streams served before a node is recycled; 0 = never
	MaxAge   time.Duration // age after which a node is recycled; 0 = never
	// TimeWait is how long a recycling node may keep its live streams before it is
	// stopped anyway; 0 = as long as they last.
	TimeWait time.Duration
}

// Intensity is a restart-intensity limit.
type Intensity struct {
	MaxRestarts int           // default 5
	Period      time.Duration // default 10s
}

// Default is the relay pool's default: auto memory and concurrency, no limit of
// streams per node, one warm node, one respawn at a time, no recycling.
var Default = Pool{Memory: "auto", Respawnable: 1, Recovery: 100, Warm: 1,
	Intensity: Intensity{MaxRestarts: 5, Period: 10 * time.Second}}

// WithDefaults fills p's unset fields from Default and reports the first
// invalid one by its setting name.
func (p Pool) WithDefaults() (Pool, error) {
	d := Default
	if p.Memory == "" {
		p.Memory = d.Memory
	}
	if _, err := Parse(p.Memory, 1<<30); err != nil {
		return p, fmt.Errorf("memory: %w", err)
	}
	if p.Concurrent < 0 || p.Concurrent > 4096 {
		return p, fmt.Errorf("concurrent: %d is outside 0..4096 (0 = automatic)", p.Concurrent)
	}
	if p.WaitQueue < 0 {
		return p, fmt.Errorf("waitQueue: %d is negative (want an integer ≥ 0, 0 = no limit)", p.WaitQueue)
	}
	if p.Respawnable == 0 {
		p.Respawnable = d.Respawnable
	}
	if p.Respawnable < 0 {
		return p, fmt.Errorf("respawnable: %d is negative (want an integer ≥ 1)", p.Respawnable)
	}
	if p.Keepalive.MaxCount < 0 {
		return p, fmt.Errorf("keepalive.maxcount: %d is negative (want an integer ≥ 0, 0 = never)", p.Keepalive.MaxCount)
	}
	if p.Keepalive.MaxAge < 0 || p.Keepalive.TimeWait < 0 {
		return p, errors.New("keepalive: maxage and timewait must not be negative")
	}
	if p.Recovery == 0 {
		p.Recovery = d.Recovery
	}
	if p.Recovery < 0 {
		return p, fmt.Errorf("recovery: %d is negative (want an integer ≥ 1)", p.Recovery)
	}
	if p.Intensity.MaxRestarts == 0 {
		p.Intensity.MaxRestarts = d.Intensity.MaxRestarts
	}
	if p.Intensity.Period == 0 {
		p.Intensity.Period = d.Intensity.Period
	}
	if p.Intensity.MaxRestarts < 0 {
		return p, fmt.Errorf("intensity.maxRestarts: %d is negative (want an integer ≥ 0)", p.Intensity.MaxRestarts)
	}
	if p.Intensity.Period < 0 {
		return p, errors.New("intensity.period: must not be negative")
	}
	if p.Warm == 0 {
		p.Warm = d.Warm
	}
	if p.Procs == 0 {
		p.Procs = 1
	}
	if p.Procs < 0 || p.Procs > 1024 {
		return p, fmt.Errorf("procs: %d is outside 1..1024 (want an integer)", p.Procs)
	}
	if p.Warm < -1 {
		return p, fmt.Errorf("warm: %d is below -1 (want an integer ≥ -1, -1 = none)", p.Warm)
	}
	if p.Warm < 0 {
		p.Warm = 0
	}
	return p, nil
}

// Limits are what p's settings come to on a machine of total memory with
// free available: one node's memory limit and the pool's process limit
// (concurrent, or derived from the working memory when it is 0). p must have
// passed WithDefaults.
func (p Pool) Limits(total, free int64, u Usage) (memory int64, concurrent int) {
	memory, _ = Parse(p.Memory, Auto(total, free, u)) // checked by WithDefaults
	concurrent = p.Concurrent
	if concurrent == 0 {
		concurrent = Concurrent(total, u, memory)
	}
	return memory, concurrent
}
