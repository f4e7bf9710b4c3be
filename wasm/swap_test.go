package wasm

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
)

// swapModule is a route module for the swap tests and the native policy it
// decides as.
type swapModule struct {
	name   string
	b      []byte
	native func(*abi.RouteInput) abi.RouteOutput
}

// swapModules are route-hrw, route-least-loaded and a third module of their
// size that is neither: route-hrw with a custom section, which changes its
// sha256 and nothing it decides, so that rotating through the three, every
// swap loads a module that is not the slot's current or previous one.
func swapModules(t testing.TB) []swapModule {
	hrw := builtin(t, "route-hrw")
	third := append(slices.Clip(hrw), 0, 7, 5, 't', 'h', 'i', 'r', 'd', 3) // custom section "third", one byte
	return []swapModule{
		{"route-hrw", hrw, policy.RouteHRW},
		{"route-least-loaded", builtin(t, "route-least-loaded"), policy.RouteLeastLoaded},
		{"route-hrw+section", third, policy.RouteHRW},
	}
}

// TestAThousandHotSwapsUnderLoadTakeEffectAtOnceFailNoDecisionAndDoNotGrowTheProcess
// swaps the route slot 1,000 times while three goroutines decide at full
// speed: 500 swaps back and forth between route-hrw and route-least-loaded
// (the module loaded is the slot's previous one), then 500 through three
// modules (never the current or previous one, so each is rewritten and
// compiled, from wazero's compilation cache). Every decision during the swaps
// must be one of the two modules' answers (the slot fails closed, so a
// failure shows as a rejection); the first decision after a swap returns must
// be the new module's: a swap takes effect when Load returns, and the time
// Load takes, logged, is how long an operator waits. RSS after the swaps must
// stay within 10% of before.
func TestAThousandHotSwapsUnderLoadTakeEffectAtOnceFailNoDecisionAndDoNotGrowTheProcess(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: 2, Deadline: 2 * time.Second, BreakerFailures: -1}}})
	mods := swapModules(t)
	in := &abi.RouteInput{StreamID: "swap", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(16)}
	want := make([]abi.RouteOutput, len(mods))
	for i, m := range mods {
		want[i] = m.native(in)
	}
	if reflect.DeepEqual(want[0], want[1]) {
		t.Fatal("the two policies answer this input alike: the test could not tell them apart")
	}
	// Warm: every module compiled once, so every swap below is a cached
	// compile; the last two are route-hrw, then route-least-loaded, so the
	// first swap below goes back to the previous module, like every other
	// swap of the first phase.
	for i := range 6 {
		if _, err := h.Load(ctx, SlotRoute, mods[(i+2)%3].b, "warm"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	debug.FreeOSMemory()
	rss0 := rssBytes()

	stop := make(chan struct{})
	var decided, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := h.Route(ctx, in)
				if err != nil || !reflect.DeepEqual(out, want[0]) && !reflect.DeepEqual(out, want[1]) {
					failed.Add(1)
					why := fmt.Sprintf("%+v %v", out, err)
					if out.Reject != nil {
						why += " rejected: " + out.Reject.Reason
					}
					firstFailure.CompareAndSwap(nil, why)
				}
				decided.Add(1)
			}
		})
	}
	var took [2][]time.Duration // back and forth, through three
	for i := range 1000 {
		phase, k := 0, i%2
		if i >= 500 {
			phase, k = 1, i%3
		}
		start := time.Now()
		if _, err := h.Load(ctx, SlotRoute, mods[k].b, mods[k].name); err != nil {
			t.Fatalf("swap %d: %v", i, err)
		}
		took[phase] = append(took[phase], time.Since(start))
		if out, err := h.Route(ctx, in); err != nil || !reflect.DeepEqual(out, want[k]) {
			t.Fatalf("swap %d to %s: the next decision was %+v, %v; want the new module's %v", i, mods[k].name, out, err, want[k].Agents)
		}
	}
	close(stop)
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // retired modules finish closing
	debug.FreeOSMemory()               // count what is held, not what the Go heap has not returned yet
	rss1 := rssBytes()
	for phase, name := range []string{"back and forth", "through three"} {
		ts := took[phase]
		slices.Sort(ts)
		t.Logf("500 swaps %s: p50 %s p99 %s max %s", name, ts[len(ts)/2], ts[len(ts)*99/100], ts[len(ts)-1])
	}
	t.Logf("%d decisions during the swaps, %d failed; RSS %d → %d MiB", decided.Load(), failed.Load(), rss0>>20, rss1>>20)
	if failed.Load() != 0 {
		t.Fatalf("%d of %d decisions failed during the swaps, the first: %v", failed.Load(), decided.Load(), firstFailure.Load())
	}
	if decided.Load() < 1000 {
		t.Fatalf("only %d decisions during 1,000 swaps: the deciders did not run", decided.Load())
	}
	if rss1 > rss0+rss0/10 {
		t.Fatalf("RSS grew from %d MiB to %d MiB over 1,000 swaps (limit +10%%)", rss0>>20, rss1>>20)
	}
	if st := h.Status()[0]; st.Swaps < 1000 {
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

// TestAModuleLeavingTheSlotKeepsItsCodeForAWhileOnly: while a module that
// left its slot keeps its compiled code, swapping back and rolling back
// reuse it, as uploading the current module again does; once KeepPrevious
// has passed the code is closed (nothing runs on it), and a rollback compiles
// the module again and decides with it.
func TestAModuleLeavingTheSlotKeepsItsCodeForAWhileOnly(t *testing.T) {
	ctx := context.Background()
	const keep = 300 * time.Millisecond
	h := newHost(t, Config{KeepPrevious: keep, Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: 1}}})
	s := h.slots[SlotRoute]
	mods := swapModules(t)
	in := &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(4)}
	decides := func(k int) {
		t.Helper()
		if out, err := h.Route(ctx, in); err != nil || !reflect.DeepEqual(out, mods[k].native(in)) {
			t.Fatalf("after loading %s: %+v, %v", mods[k].name, out, err)
		}
	}
	load := func(k int, source string) *code {
		t.Helper()
		if _, err := h.Load(ctx, SlotRoute, mods[k].b, source); err != nil {
			t.Fatal(err)
		}
		decides(k)
		return s.cur.Load().code
	}
	hrw := s.cur.Load().code // route-hrw, the default module
	ll := load(1, "ll")
	if load(0, "back") != hrw {
		t.Fatal("swapping back to the previous module at once compiled it again")
	}
	if _, err := h.Rollback(ctx, SlotRoute); err != nil || s.cur.Load().code != ll {
		t.Fatalf("rolling back at once compiled the module again (%v)", err)
	}
	decides(1)
	if load(1, "again") != ll {
		t.Fatal("uploading the current module again compiled it again")
	}
	if load(0, "back2") == hrw {
		t.Fatal("route-hrw, two swaps back, kept its code")
	}
	// route-least-loaded left the slot: its code goes after keep, once nothing runs on it.
	for deadline := time.Now().Add(keep + 5*time.Second); ll.refs.Load() != 0 || hrw.refs.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("code is still held %s after its module left: route-least-loaded's %d times, route-hrw's %d", keep+5*time.Second, ll.refs.Load(), hrw.refs.Load())
		}
	}
	if _, err := h.Rollback(ctx, SlotRoute); err != nil || s.cur.Load().code == ll {
		t.Fatalf("a rollback after the code went: %v", err)
	}
	decides(1)
	if st := h.Status()[0]; st.Previous == nil || st.Previous.Source != "back2" || st.Module.Source != "again" {
		t.Fatalf("status after the rollbacks: %+v, previous %+v", st.Module, st.Previous)
	}
}

// TestAModuleSeenRecentlyIsNotRewrittenAgain: a module loaded again after
// others (neither the slot's current nor its previous module, so compiled
// again) runs the rewrite made the first time; the host keeps the rewrites of
// the last rewritesKept modules only.
func TestAModuleSeenRecentlyIsNotRewrittenAgain(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: 1}}})
	s := h.slots[SlotRoute]
	hrw := builtin(t, "route-hrw")
	variant := func(k int) []byte { // route-hrw with a custom section: a module of its own
		return append(slices.Clip(hrw), 0, 3, 1, 'v', byte(k))
	}
	load := func(b []byte) *module {
		t.Helper()
		if _, err := h.Load(ctx, SlotRoute, b, "variant"); err != nil {
			t.Fatal(err)
		}
		return s.cur.Load()
	}
	first := &load(variant(0)).wasm[0]
	load(variant(1))
	load(variant(2))
	if again := load(variant(0)); &again.wasm[0] != first {
		t.Fatal("a module loaded again after two others was rewritten again")
	}
	for k := 1; k <= rewritesKept; k++ {
		load(variant(10 + k))
	}
	if h.rewrites.has(sha(variant(0))) {
		t.Fatalf("the rewrite of a module loaded %d modules ago is still kept", rewritesKept)
	}
	if got := len(h.rewrites.entries); got != rewritesKept {
		t.Fatalf("%d rewrites kept, want %d", got, rewritesKept)
	}
}

// TestASwappedInModuleFillsItsPoolAfterTheSwap: a swap returns with one
// instance of the new module ready and makes the rest of the pool after it;
// every call meanwhile is the new module's, and the pool reaches its size.
func TestASwappedInModuleFillsItsPoolAfterTheSwap(t *testing.T) {
	ctx := context.Background()
	const pool = 4
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Pool: pool}}})
	s := h.slots[SlotRoute]
	mods := swapModules(t)
	in := &abi.RouteInput{StreamID: "fill", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(4)}
	if _, err := h.Load(ctx, SlotRoute, mods[1].b, "ll"); err != nil {
		t.Fatal(err)
	}
	m := s.cur.Load()
	for deadline := time.Now().Add(10 * time.Second); len(m.pool) < pool; {
		if out, err := h.Route(ctx, in); err != nil || !reflect.DeepEqual(out, mods[1].native(in)) {
			t.Fatalf("while the pool fills: %+v, %v", out, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool has %d of %d instances 10s after the swap", len(m.pool), pool)
		}
		time.Sleep(time.Millisecond)
	}
}
