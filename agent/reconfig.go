package agent

import (
	"fmt"
	"maps"
	"slices"

	"github.com/sluicegw/sluice/internal/procstat"
)

// SetPools replaces the limits of the agent's pools (a config reload of
// process.*): node memory, concurrent, waitQueue, warm, respawnable, recovery,
// intensity, keepalive and procs. The purposes must stay those the agent
// started with, since they are its serf tags; nodes running keep their memory
// limit and GOMAXPROCS until they are replaced. Streams waiting for room get it
// at once when a limit rose; a limit that fell holds new streams until the
// nodes are under it. Nothing changes when a pool is invalid.
func (a *Agent) SetPools(pools map[string]Pool) error {
	next, err := a.poolLimits(pools)
	if err != nil {
		return err
	}
	m := a.mgr
	m.mu.Lock()
	for name, l := range next {
		p := m.pools[name]
		p.cfg, p.memLimit, p.concurrent = l.cfg, l.mem, l.concurrent
		p.budget.recovery, p.budget.intensity = l.cfg.Recovery, l.cfg.Intensity
	}
	m.mu.Unlock()
	m.sup.signal() // the supervision tick warms nodes up and serves the queues
	a.log.Info("agent: pool limits replaced", "purposes", len(next))
	return nil
}

// CheckPools reports what SetPools would refuse in pools, changing nothing.
func (a *Agent) CheckPools(pools map[string]Pool) error {
	_, err := a.poolLimits(pools)
	return err
}

// poolLimit is one pool's limits as SetPools puts them in place.
type poolLimit struct {
	cfg        Pool
	mem        int64
	concurrent int
}

// poolLimits checks pools and derives each one's limits as the agent did at
// its start.
func (a *Agent) poolLimits(pools map[string]Pool) (map[string]poolLimit, error) {
	if !slices.Equal(slices.Sorted(maps.Keys(pools)), slices.Sorted(maps.Keys(a.mgr.pools))) {
		return nil, fmt.Errorf("process: adding or removing a purpose takes a restart (it is the agent's tag)")
	}
	total, free := procstat.MemInfo()
	next := map[string]poolLimit{}
	for name, pc := range pools {
		pc, err := pc.WithDefaults()
		if err != nil {
			return nil, fmt.Errorf("process.%s.%w", name, err)
		}
		mem, conc := pc.Limits(total, free, a.cfg.MemoryUsage)
		next[name] = poolLimit{pc, mem, conc}
	}
	return next, nil
}
