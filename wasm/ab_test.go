package wasm

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm/internal/preempt"
)

// abVariant is one way to make a module interruptible, for the A/B
// measurement of what the structured-loops pass and the kept rewrites are worth.
type abVariant struct {
	name     string
	loops    bool // the structured-loops pass
	disk     bool // rewrites kept on disk too
	uncached bool // no rewrite kept at all
}

var abVariants = []abVariant{
	{name: "loops+kept", loops: true, disk: true},
	{name: "direct+memory"},
	{name: "direct+uncached", uncached: true},
}

// abHost is a host whose route slot makes modules interruptible as v says.
func abHost(t testing.TB, v abVariant, sc SlotConfig) *Host {
	cfg := withBuiltins(t, Config{Slots: map[string]SlotConfig{SlotRoute: sc}})
	cfg.DefaultModules = nil
	h := newHost(t, cfg)
	if !v.loops {
		h.rewrites.rewrite = preempt.RewriteWithoutLoops
	}
	h.rewrites.dir = ""
	if v.disk {
		h.rewrites.dir = t.TempDir()
	}
	h.rewrites.uncached = v.uncached
	if v.uncached {
		h.rewrites.rewrite = preempt.RewriteWithoutLoops
	}
	return h
}

// BenchmarkRouteAB: route-hrw decisions through a host whose rewrite
// structures loops and one whose rewrite does not, in alternating turns of 256
// decisions in one process.
func BenchmarkRouteAB(b *testing.B) {
	ctx := context.Background()
	var hosts [2]*Host
	for i, v := range abVariants[:2] {
		hosts[i] = abHost(b, v, SlotConfig{Pool: 1})
		if _, err := hosts[i].Load(ctx, SlotRoute, builtin(b, "route-hrw"), "route-hrw"); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []int{16, 128} {
		in := &abi.RouteInput{StreamID: "bench-stream", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: taggedCandidates(n), CandidatesVersion: 1}
		b.Run(itoa(n), func(b *testing.B) {
			var spent [2]time.Duration
			for done := 0; done < b.N; {
				turn := min(256, b.N-done)
				for k, h := range hosts {
					start := time.Now()
					for range turn {
						if out, err := h.Route(ctx, in); err != nil || len(out.Agents) == 0 {
							b.Fatal(out, err)
						}
					}
					spent[k] += time.Since(start)
				}
				done += turn
			}
			b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "loops-ns/op")
			b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "direct-ns/op")
			b.ReportMetric(float64(spent[0])/float64(spent[1]), "loops/direct")
		})
	}
}

// TestSwapsAB swaps between route-hrw and route-least-loaded under three
// full-speed deciders with each variant in turn, rounds alternating, and
// reports each variant's swap times.
func TestSwapsAB(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	ctx := context.Background()
	mods := [][]byte{builtin(t, "route-hrw"), builtin(t, "route-least-loaded")}
	sc := SlotConfig{Failure: FailClosed, Pool: 2, Deadline: 2 * time.Second, BreakerFailures: -1}
	hosts := make([]*Host, len(abVariants))
	took := make([][]time.Duration, len(abVariants))
	for i, v := range abVariants {
		hosts[i] = abHost(t, v, sc)
		for k := range 4 {
			if _, err := hosts[i].Load(ctx, SlotRoute, mods[k%2], "warm"); err != nil {
				t.Fatal(err)
			}
		}
	}
	in := &abi.RouteInput{StreamID: "swap", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(16)}
	for round := range 5 {
		for i, h := range hosts {
			stop := make(chan struct{})
			var failed atomic.Int64
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if out, err := h.Route(ctx, in); err != nil || out.Reject != nil {
							if failed.Add(1) < 3 {
								t.Logf("%s: %+v %v", abVariants[i].name, out.Reject, err)
							}
						}
					}
				})
			}
			for k := range 60 {
				start := time.Now()
				if _, err := h.Load(ctx, SlotRoute, mods[k%2], "swap"); err != nil {
					t.Fatal(err)
				}
				took[i] = append(took[i], time.Since(start))
			}
			close(stop)
			wg.Wait()
			if failed.Load() != 0 {
				t.Errorf("round %d %s: %d decisions failed", round, abVariants[i].name, failed.Load())
			}
		}
	}
	for i, ts := range took {
		slices.Sort(ts)
		t.Logf("%-16s %d swaps: p50 %s p99 %s max %s", abVariants[i].name, len(ts), ts[len(ts)/2].Round(time.Millisecond), ts[len(ts)*99/100].Round(time.Millisecond), ts[len(ts)-1].Round(time.Millisecond))
	}
}
