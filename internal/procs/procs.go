// Package procs sizes a sluice process's GOMAXPROCS to its load: one P while
// the process uses little CPU, every core once it is busy.
//
// A gateway relaying a few live streams is woken by nearly every packet, and
// with a second idle P the Go scheduler wakes a second thread for nearly
// every goroutine it readies (wakep: a futex wake, then a spinning thread that
// finds nothing and sleeps again). Measured with `sluice bench --viewers 20
// --together`, a gateway at GOMAXPROCS=1 spent 0.70–0.75× the CPU per delivered
// packet of the same gateway at 2 (RATIONALE.md). One P caps the process at
// one core, so the controller raises GOMAXPROCS to its start value as soon as
// the process is busy and lowers it again only after a long quiet spell.
//
// An operator who sets GOMAXPROCS in the environment has chosen: the
// controller then does nothing.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Controller decisions, at one sample every Interval.
const (
	// Interval is how often the process's CPU use is sampled.
	Interval = 500 * time.Millisecond
	// upAt: one P busier than this (cores, averaged over upSamples) gets
	// every core back.
	upAt      = 0.5
	upSamples = 2
	// downAt: every core, used less than this for downSamples in a row,
	// goes back to one P.
	downAt      = 0.25
	downSamples = 20
)

// policy is the controller's state: the GOMAXPROCS it set and how many
// samples in a row have asked for a change.
type policy struct {
	max, procs int
	streak     int
}

// next takes one sample of CPU use (cores) and says the GOMAXPROCS to run at.
func (p *policy) next(used float64) int {
	switch {
	case p.procs == 1 && used > upAt:
		p.streak++
		if p.streak >= upSamples {
			p.procs, p.streak = p.max, 0
		}
	case p.procs > 1 && used < downAt:
		p.streak++
		if p.streak >= downSamples {
			p.procs, p.streak = 1, 0
		}
	default:
		p.streak = 0
	}
	return p.procs
}

// Run sizes GOMAXPROCS until ctx ends, then puts back the value it started
// with. It returns at once when GOMAXPROCS is set in the environment or the
// machine has one core.
func Run(ctx context.Context, log *slog.Logger) {
	start := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || start < 2 {
		return
	}
	p := &policy{max: start, procs: 1}
	runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(start)
	log.Debug("procs: one P until the process is busy", "max", start)
	t := time.NewTicker(Interval)
	defer t.Stop()
	last, lastAt := cpuTime(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := cpuTime()
			used := float64(cpu-last) / float64(now.Sub(lastAt))
			last, lastAt = cpu, now
			was := p.procs
			if n := p.next(used); n != was {
				runtime.GOMAXPROCS(n)
				log.Debug("procs: GOMAXPROCS changed", "from", was, "to", n, "cpu", used)
			}
		}
	}
}

// cpuTime is the CPU the process has used (its own threads, not its
// children's: the nodes size themselves).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
