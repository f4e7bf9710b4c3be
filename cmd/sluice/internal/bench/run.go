package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/mediaload"
	"github.com/sluicegw/sluice/internal/mediatest"
)

// load is one target's publisher and viewers, ready to measure.
type load struct {
	m       *mediaload.Meter
	pid, n  int
	closers []func()
}

// viewers adds viewer sessions for close to end.
func (l *load) viewers(vs []*mediatest.Session) {
	for _, v := range vs {
		l.closers = append(l.closers, func() { _ = v.Close() })
	}
}

// close ends the viewers, then the publisher: last in, first out.
func (l *load) close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
	l.closers = nil
}

// runPlan is how the targets are measured: at which viewer counts, how many
// times, and whether one after another or all in one window.
type runPlan struct {
	self           string
	deps           Deps
	ns             []int
	rounds         int
	together       bool
	warmup, window time.Duration
}

// runTargets measures every target at every viewer count, plan.rounds times.
// One after another, each target has the machine to itself in its window, but
// what else the machine runs changes between the windows; together, every
// target is measured in the same window, each with its own publisher and
// viewers, so they share whatever else runs (and each other's load).
func runTargets(ctx context.Context, targets []benchTarget, plan runPlan, stderr io.Writer) ([]result, error) {
	var results []result
	for round := 1; round <= plan.rounds; round++ {
		var rs []result
		var err error
		if plan.together {
			rs, err = runTogether(ctx, targets, plan, stderr)
		} else {
			rs, err = runInTurn(ctx, targets, plan, stderr)
		}
		if err != nil {
			return nil, err
		}
		for i := range rs {
			rs[i].round = round
			if rs[i].target == baseName(targets) {
				// The bench knows a packet's send time by its sequence number,
				// which another server may rewrite (MediaMTX does): a latency
				// looked up so would be another packet's.
				rs[i].P50, rs[i].P99 = 0, 0
			}
			r := rs[i]
			fmt.Fprintf(stderr, "round %d: %s, %d viewers: %.0f pkt/s delivered, %.1f µs CPU/pkt, latency p50 %s p99 %s, loss %.2f%%%s\n",
				round, r.target, r.n, r.PPS, r.CPUPerPkt, ms(r.P50), ms(r.P99), 100*r.Loss, dropNote(r.Result))
		}
		results = append(results, rs...)
	}
	return results, nil
}

// started is a running target.
type started struct {
	tg   benchTarget
	pid  int
	urls []string
	stop func()
}

func startAll(ctx context.Context, targets []benchTarget, self string) ([]started, func(), error) {
	var ss []started
	stopAll := func() {
		for _, s := range ss {
			s.stop()
		}
	}
	for _, tg := range targets {
		srv, urls, stop, err := tg.start(ctx, self)
		if err != nil {
			stopAll()
			return nil, nil, fmt.Errorf("start %s: %w", tg.name, err)
		}
		ss = append(ss, started{tg, srv.Process.Pid, urls, stop})
	}
	return ss, stopAll, nil
}

// prepare publishes to s and joins n viewers.
func (s started) prepare(ctx context.Context, deps Deps, n int) (*load, error) {
	if s.tg.moq {
		return prepareMoQ(ctx, deps, s.urls[0], s.urls[1], s.pid, n)
	}
	return prepareWHIP(ctx, s.urls[0], s.pid, n)
}

// runInTurn measures one target at a time: each in runTogether's way alone.
func runInTurn(ctx context.Context, targets []benchTarget, plan runPlan, stderr io.Writer) ([]result, error) {
	var results []result
	for _, tg := range targets {
		rs, err := runTogether(ctx, []benchTarget{tg}, plan, stderr)
		if err != nil {
			return nil, err
		}
		results = append(results, rs...)
	}
	return results, nil
}

func runTogether(ctx context.Context, targets []benchTarget, plan runPlan, stderr io.Writer) ([]result, error) {
	var results []result
	for _, n := range plan.ns {
		ss, stop, err := startAll(ctx, targets, plan.self)
		if err != nil {
			return nil, err
		}
		loads := make([]*load, len(ss))
		closeAll := func() {
			for _, l := range loads {
				if l != nil {
					l.close()
				}
			}
		}
		for i, s := range ss {
			if loads[i], err = s.prepare(ctx, plan.deps, n); err != nil {
				closeAll()
				stop()
				return nil, fmt.Errorf("%s with %d viewers: %w", s.tg.name, n, err)
			}
		}
		time.Sleep(plan.warmup)
		rs := make([]result, len(ss))
		errs := make([]error, len(ss))
		// Alone, a target's split of CPU between the gateway and its nodes
		// is worth printing; together the lines would interleave.
		split := stderr
		if len(loads) > 1 {
			split = io.Discard
		}
		var wg sync.WaitGroup
		for i, l := range loads {
			wg.Go(func() {
				r, err := l.m.Measure(l.pid, l.n, plan.window, split)
				rs[i], errs[i] = result{target: ss[i].tg.name, n: n, Result: r}, err
			})
		}
		wg.Wait()
		closeAll()
		stop()
		for i, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("%s with %d viewers: %w", ss[i].tg.name, n, err)
			}
		}
		results = append(results, rs...)
	}
	return results, nil
}

// printMedians writes, for more than one round, each path's median over the
// rounds and the median of its per-round ratios to the relay, the baseline
// and sluice's WHIP path: a ratio is taken within a round, where both sides
// saw the same machine.
func printMedians(stdout io.Writer, results []result, ns []int, base baseline) {
	rounds := 0
	for _, r := range results {
		rounds = max(rounds, r.round)
	}
	if rounds < 2 {
		return
	}
	fmt.Fprintf(stdout, "\nMedians over %d rounds (per-round ratios in brackets, lowest to highest):\n\n| viewers | path | CPU µs / delivered pkt | latency p50 | ÷ pion relay | ÷ %s | ÷ sluice (WHIP ingest) |\n|---|---|---|---|---|---|---|\n", rounds, orNone(base))
	for _, n := range ns {
		var names []string
		for _, r := range results {
			if r.n == n && !slices.Contains(names, r.target) {
				names = append(names, r.target)
			}
		}
		for _, name := range names {
			var cpu, p50 []float64
			ratios := map[string][]float64{}
			for round := 1; round <= rounds; round++ {
				r, ok := find(results, round, n, name)
				if !ok {
					continue
				}
				cpu = append(cpu, r.CPUPerPkt)
				if r.P50 != 0 { // 0: the server gave the bench no latency (ms says why)
					p50 = append(p50, float64(r.P50.Microseconds())/1000)
				}
				for _, other := range []string{relayName, base.name(), whipName} {
					if o, ok := find(results, round, n, other); ok && other != name {
						ratios[other] = append(ratios[other], r.CPUPerPkt/o.CPUPerPkt)
					}
				}
			}
			lat := "n/a"
			if len(p50) > 0 {
				lat = fmt.Sprintf("%.2f ms", median(p50))
			}
			fmt.Fprintf(stdout, "| %d | %s | %.1f | %s | %s | %s | %s |\n", n, name, median(cpu), lat,
				spread(ratios[relayName]), spread(ratios[base.name()]), spread(ratios[whipName]))
		}
	}
}

func find(results []result, round, n int, target string) (result, bool) {
	for _, r := range results {
		if r.round == round && r.n == n && r.target == target {
			return r, true
		}
	}
	return result{}, false
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is a ratio's median and, in brackets, every round's value.
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	out := fmt.Sprintf("**%.2f×** (", median(s))
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%.2f", x)
	}
	return out + ")"
}

// baseName is the name of the baseline among targets, or "".
func baseName(targets []benchTarget) string {
	for _, tg := range targets {
		if tg.base != nil {
			return tg.name
		}
	}
	return ""
}
