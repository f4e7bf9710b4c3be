package wasm

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/sluicegw/sluice/internal/benchlat"
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm/internal/preempt"
)

// BenchmarkRoute is a route-hrw decision over 16 and 128 candidates through the
// host (encode, guest call, decode) and the same policy compiled natively.
func BenchmarkRoute(b *testing.B) {
	for _, trusted := range []bool{false, true} {
		mode := "interruptible"
		if trusted {
			mode = "trusted"
		}
		b.Run(mode, func(b *testing.B) { benchRoute(b, trusted) })
	}
}

func benchRoute(b *testing.B, trusted bool) {
	h := newHost(b, Config{Slots: map[string]SlotConfig{SlotRoute: {Pool: 1, Trusted: trusted}}})
	ctx := context.Background()
	for _, n := range []int{16, 128} {
		in := &abi.RouteInput{StreamID: "bench-stream", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: taggedCandidates(n)}
		// host: the agent list as it is between membership changes, which the
		// guest holds after its first call, numbered as the gateway numbers it
		// (CandidatesVersion). host-unversioned: the same without the number, so
		// the host compares the list with the guest's. host-one-changed: one
		// agent's load changes before every call (a load tag updated).
		// host-all-changed: every agent's does, so the guest decodes the whole
		// list every call.
		for _, changes := range []int{-1, 0, 1, n} {
			name := map[int]string{-1: "host/", 0: "host-unversioned/", 1: "host-one-changed/", n: "host-all-changed/"}[changes]
			b.Run(name+itoa(n), func(b *testing.B) {
				i := 0
				in.CandidatesVersion = 0
				benchlat.Report(b, func() {
					if changes < 0 {
						in.CandidatesVersion = 1
					}
					for k := range changes {
						in.Candidates[(i+k)%n].Load ^= 1
					}
					i++
					if out, err := h.Route(ctx, in); err != nil || len(out.Agents) == 0 {
						b.Fatal(out, err)
					}
				})
				if st := h.Status(); st[0].Fallbacks != 0 {
					b.Logf("%d fallbacks: the benchmark did not measure the guest", st[0].Fallbacks)
				}
			})
		}
		b.Run("native/"+itoa(n), func(b *testing.B) {
			benchlat.Report(b, func() {
				if out := policy.RouteHRW(in); len(out.Agents) == 0 {
					b.Fatal(out)
				}
			})
		})
	}
}

// BenchmarkHostShare is a route decision over 16 tagged candidates through the
// host with the hand-written guest of testdata/good.wat, which answers at once
// without reading its input: what the host's side of a decision costs (encode,
// pool, call, read the answer, metrics).
func BenchmarkHostShare(b *testing.B) {
	h := newHost(b, Config{Slots: map[string]SlotConfig{SlotRoute: {Pool: 1}}})
	ctx := context.Background()
	if _, err := h.Load(ctx, SlotRoute, testModule(b, "good"), "good.wat"); err != nil {
		b.Fatal(err)
	}
	in := &abi.RouteInput{StreamID: "bench-stream", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: taggedCandidates(16), CandidatesVersion: 1}
	benchlat.Report(b, func() {
		if out, err := h.Route(ctx, in); err != nil || len(out.Agents) != 1 {
			b.Fatal(out, err)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// taggedCandidates are n agents as the gateway describes them: every serf tag
// of the member travels with the candidate.
func taggedCandidates(n int) []abi.Candidate {
	cs := candidates(n)
	for i := range cs {
		cs[i].Tags = abi.PairsOf(map[string]string{
			"role": "agent", "id": cs[i].ID, "api": "10.0.0.1:7443", "media": "10.0.0.1:7444",
			"purposes": "relay", "cap": "100", "load": itoa(cs[i].Load), "queue": "0", "state": "serving",
		})
	}
	return cs
}

// BenchmarkInterruption measures what stopping a runaway guest costs a
// loop-heavy guest (a million-iteration loop per call): nothing, wazero's
// WithCloseOnContextDone, or the preempt rewrite the host uses.
func BenchmarkInterruption(b *testing.B) {
	ctx := context.Background()
	plain := testModule(b, "busy")
	rewritten, err := preempt.Rewrite(plain)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		module []byte
		close  bool
	}{{"none", plain, false}, {"closeOnContextDone", plain, true}, {"preempt", rewritten, false}} {
		b.Run(c.name, func(b *testing.B) {
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(c.close))
			defer rt.Close(ctx)
			m, err := rt.Instantiate(ctx, c.module)
			if err != nil {
				b.Fatal(err)
			}
			f := m.ExportedFunction("sluice_route")
			stack := make([]uint64, 2)
			cctx, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				stack[0], stack[1] = 0, 0
				if err := f.CallWithStack(cctx, stack); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSwapParts is what a swap of route-hrw costs, part by part, with
// nothing else running: the rewrite, wazero's compile of the rewritten
// module from its compilation cache, and one instance (_initialize included).
func BenchmarkSwapParts(b *testing.B) {
	ctx := context.Background()
	hrw := builtin(b, "route-hrw")
	b.Run("rewrite", func(b *testing.B) {
		for b.Loop() {
			if _, err := preempt.Rewrite(hrw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compile-cached", func(b *testing.B) {
		w, err := preempt.Rewrite(hrw)
		if err != nil {
			b.Fatal(err)
		}
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir(b))
		if err != nil {
			b.Fatal(err)
		}
		defer cache.Close(ctx)
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
		defer rt.Close(ctx)
		cm, err := rt.CompileModule(ctx, w) // fills the cache if it is cold
		if err != nil {
			b.Fatal(err)
		}
		cm.Close(ctx)
		for b.Loop() {
			cm, err := rt.CompileModule(ctx, w)
			if err != nil {
				b.Fatal(err)
			}
			cm.Close(ctx)
		}
	})
	b.Run("instance", func(b *testing.B) {
		h := newHost(b, Config{Slots: map[string]SlotConfig{SlotRoute: {Pool: 1}}})
		m := h.slots[SlotRoute].cur.Load()
		for b.Loop() {
			in, err := m.instantiate(ctx)
			if err != nil {
				b.Fatal(err)
			}
			m.closeInstance(in)
		}
	})
}
