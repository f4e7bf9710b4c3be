package wasm

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/sdk/abi"
)

// TestAThousandHotSwapsUnderLoadFailNoDecisionAndDoNotGrowTheProcess swaps the
// route slot between two modules 1,000 times while goroutines decide at full
// speed. Every decision must come from a module (the slot fails closed, so a
// failure would show as a rejection), and RSS after the swaps must stay within
// 10% of before.
func TestAThousandHotSwapsUnderLoadFailNoDecisionAndDoNotGrowTheProcess(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: 2, Deadline: 2 * time.Second, BreakerFailures: -1}}})
	a, b := builtin(t, "route-hrw"), builtin(t, "route-least-loaded")
	mods := [][]byte{a, b}
	// Warm: both compiled once, so every swap below is a cached compile.
	for i := 0; i < 4; i++ {
		if _, err := h.Load(ctx, SlotRoute, mods[i%2], "warm"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	debug.FreeOSMemory()
	rss0 := rssBytes()

	stop := make(chan struct{})
	var decided, failed atomic.Int64
	var wg sync.WaitGroup
	in := &abi.RouteInput{StreamID: "swap", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(16)}
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := h.Route(ctx, in)
				if err != nil || out.Reject != nil || len(out.Agents) == 0 {
					failed.Add(1)
				}
				decided.Add(1)
			}
		}()
	}
	const swaps = 1000
	took := make([]time.Duration, 0, swaps)
	for i := 0; i < swaps; i++ {
		start := time.Now()
		if _, err := h.Load(ctx, SlotRoute, mods[i%2], "swap"); err != nil {
			t.Fatalf("swap %d: %v", i, err)
		}
		took = append(took, time.Since(start))
	}
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // retired modules finish closing
	debug.FreeOSMemory()               // count what is held, not what the Go heap has not returned yet
	rss1 := rssBytes()
	slices.Sort(took)
	t.Logf("%d swaps: %d decisions, %d failed; swap time p50 %s p99 %s max %s; RSS %d → %d MiB",
		swaps, decided.Load(), failed.Load(), took[len(took)/2], took[len(took)*99/100], took[len(took)-1], rss0>>20, rss1>>20)
	if failed.Load() != 0 {
		t.Fatalf("%d of %d decisions failed during the swaps", failed.Load(), decided.Load())
	}
	if decided.Load() < swaps {
		t.Fatalf("only %d decisions during %d swaps: the deciders did not run", decided.Load(), swaps)
	}
	if rss1 > rss0+rss0/10 {
		t.Fatalf("RSS grew from %d MiB to %d MiB over %d swaps (limit +10%%)", rss0>>20, rss1>>20, swaps)
	}
	if st := h.Status()[0]; st.Swaps < swaps {
		t.Fatalf("status counts %d swaps", st.Swaps)
	}
}

func TestRollbackReturnsToThePreviousModule(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{})
	first := h.slots[SlotRoute].cur.Load().info.SHA256
	if _, err := h.Load(ctx, SlotRoute, testModule(t, "good"), "good.wasm"); err != nil {
		t.Fatal(err)
	}
	out, _ := h.Route(ctx, &abi.RouteInput{StreamID: "r", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(3)})
	if len(out.Agents) != 1 || out.Agents[0] != "a" {
		t.Fatalf("after the swap the new module should decide: %+v", out)
	}
	info, err := h.Rollback(ctx, SlotRoute)
	if err != nil || info.SHA256 != first {
		t.Fatalf("rollback = %+v, %v", info, err)
	}
	out, _ = h.Route(ctx, &abi.RouteInput{StreamID: "r", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(3)})
	if len(out.Agents) < 2 || out.Agents[0] == "a" {
		t.Fatalf("after the rollback the built-in should decide again: %+v", out)
	}
}

// TestAModuleSwappedInAgainIsNotRewrittenAgain: the host keeps the rewrite of
// the modules it loaded last, so alternating between two costs two rewrites,
// and the module swapped back in still decides.
func TestAModuleSwappedInAgainIsNotRewrittenAgain(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: 1}}})
	a, b := builtin(t, "route-hrw"), builtin(t, "route-least-loaded")
	h.rewrites.dir = t.TempDir() // none kept on disk yet
	before := h.rewrites.made()  // the default module, loaded by New
	for i := range 6 {
		if _, err := h.Load(ctx, SlotRoute, [][]byte{a, b}[i%2], "alternate"); err != nil {
			t.Fatal(err)
		}
		in := &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(4)}
		if out, err := h.Route(ctx, in); err != nil || len(out.Agents) == 0 {
			t.Fatalf("swap %d: %v %v", i, out, err)
		}
	}
	// route-hrw is the default module, so only route-least-loaded was new.
	if n := h.rewrites.made() - before; n != 1 {
		t.Fatalf("%d rewrites for two modules swapped in six times after the first was loaded, want 1", n)
	}
}

// TestARestartedHostReadsTheRewritesItKeptAndRewritesADamagedOne: the host
// keeps its rewrites beside wazero's compilation cache, so after a restart a
// module loads without being rewritten again; a kept rewrite that was damaged
// on disk is made again, and the module still loads and decides.
func TestARestartedHostReadsTheRewritesItKeptAndRewritesADamagedOne(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := builtin(t, "route-least-loaded")
	in := &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(4)}
	load := func() int {
		h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: 1}}})
		h.rewrites.dir = dir
		before := h.rewrites.made()
		if _, err := h.Load(ctx, SlotRoute, b, "route-least-loaded.wasm"); err != nil {
			t.Fatal(err)
		}
		if out, err := h.Route(ctx, in); err != nil || len(out.Agents) != 4 {
			t.Fatalf("%v %v", out, err)
		}
		return h.rewrites.made() - before
	}
	if n := load(); n != 1 {
		t.Fatalf("the first host made %d rewrites, want 1", n)
	}
	if n := load(); n != 0 {
		t.Fatalf("the restarted host made %d rewrites, want 0: it did not read the kept one", n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if len(files) != 1 {
		t.Fatalf("%d rewrites kept, want 1", len(files))
	}
	kept, _ := os.ReadFile(files[0])
	kept[len(kept)/2] ^= 0xff
	if err := os.WriteFile(files[0], kept, 0o600); err != nil {
		t.Fatal(err)
	}
	if n := load(); n != 1 {
		t.Fatalf("with the kept rewrite damaged the host made %d rewrites, want 1", n)
	}
}

// TestTheRewritesKeptOnDiskAreTheMostRecentlyUsed: the directory keeps a
// bounded number of rewrites, dropping the one used longest ago, so uploading a
// new module on every deploy does not fill the disk.
func TestTheRewritesKeptOnDiskAreTheMostRecentlyUsed(t *testing.T) {
	r := &rewrites{dir: t.TempDir(), keep: 2}
	sums := make([][32]byte, 4)
	for i := range sums {
		sums[i][0] = byte(i + 1)
	}
	at := time.Now().Add(-time.Hour)
	write := func(i int) {
		r.write(sums[i], []byte{byte(i)})
		at = at.Add(time.Minute) // mtimes apart, however coarse the file system's
		os.Chtimes(r.file(sums[i]), at, at)
	}
	write(0)
	write(1)
	if _, err := r.read(sums[0]); err != nil { // 0 is now the most recently used
		t.Fatal(err)
	}
	write(2)
	for i, want := range []bool{true, false, true} {
		if _, err := r.read(sums[i]); (err == nil) != want {
			t.Errorf("rewrite %d kept: %v, want %v", i, err == nil, want)
		}
	}
}
