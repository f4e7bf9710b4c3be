package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/sdk/abi"
)

func testModule(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommittedTestModulesMatchTheirWAT rebuilds every hand-written module with
// wat2wasm and compares it with the committed .wasm.
func TestCommittedTestModulesMatchTheirWAT(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		if os.Getenv("SLUICE_REQUIRE_WABT") != "" {
			t.Fatal("SLUICE_REQUIRE_WABT is set but wat2wasm is missing (apt-get install -y wabt)")
		}
		t.Skip("SKIPPED: wat2wasm is not installed (apt-get install -y wabt); the committed modules are used as they are")
	}
	wats, _ := filepath.Glob("testdata/*.wat")
	if len(wats) < 10 {
		t.Fatalf("only %d .wat files in testdata", len(wats))
	}
	for _, w := range wats {
		out := filepath.Join(t.TempDir(), "m.wasm")
		if b, err := exec.Command("wat2wasm", w, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", w, err, b)
		}
		fresh, _ := os.ReadFile(out)
		committed, err := os.ReadFile(strings.TrimSuffix(w, ".wat") + ".wasm")
		if err != nil || !bytes.Equal(fresh, committed) {
			t.Errorf("%s.wasm is stale: run wat2wasm %s -o %s.wasm", strings.TrimSuffix(w, ".wat"), w, strings.TrimSuffix(w, ".wat"))
		}
	}
}

func TestBadModulesAreRefusedAtLoadWithTheirCauseAndTheCurrentModuleStays(t *testing.T) {
	h := newHost(t, Config{})
	ctx := context.Background()
	before := h.slots[SlotRoute].cur.Load().info.SHA256
	for _, c := range []struct{ module, cause string }{
		{"not-wasm", "not a WebAssembly module"},
		{"wrong-abi", "speaks ABI v2"},
		{"missing-abi", "does not export sluice_abi_version"},
		{"missing-export", "does not export sluice_route"},
		{"init-trap", "instantiate"},
		{"trap", "failed its dry run"},
		{"loop", "failed its dry run"},
		{"memory-bomb", "failed its dry run"},
		{"bad-output", "does not decode"},
		{"huge-output", "more than the 65536 allowed"},
	} {
		_, err := h.Load(ctx, SlotRoute, testModule(t, c.module), c.module+".wasm")
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.cause) {
			t.Errorf("%s: err = %v; want ErrRefused naming %q", c.module, err, c.cause)
		}
		if now := h.slots[SlotRoute].cur.Load().info.SHA256; now != before {
			t.Fatalf("%s: the current module changed after a refused load", c.module)
		}
	}
	// The slot still decides.
	out, err := h.Route(ctx, &abi.RouteInput{StreamID: "x", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(3)})
	if err != nil || len(out.Agents) == 0 {
		t.Fatalf("route after refused loads = %+v, %v", out, err)
	}
}

// bigInput is a route input over 300 bytes: it sets off the *-late modules.
func bigInput() *abi.RouteInput {
	return &abi.RouteInput{StreamID: "boom", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(16)}
}

func TestAFailingCallFollowsTheSlotsFailureSettingAndFailsOnlyThatCall(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{FailOpen, FailClosed, FailFallback} {
		for _, mod := range []string{"trap-late", "loop-late", "bomb-late"} {
			h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: mode, MemoryPages: 64, BreakerFailures: -1}}})
			if _, err := h.Load(ctx, SlotRoute, testModule(t, mod), mod); err != nil {
				t.Fatalf("%s passes its dry run, but: %v", mod, err)
			}
			in := bigInput()
			out, err := h.Route(ctx, in)
			if err != nil {
				t.Fatalf("%s/%s: %v", mode, mod, err)
			}
			switch mode {
			case FailOpen:
				if len(out.Agents) != len(in.Candidates) || out.Agents[0] != in.Candidates[0].ID {
					t.Errorf("open/%s: want the candidates in order, got %v", mod, out.Agents)
				}
			case FailClosed:
				if out.Reject == nil || out.Reject.Status != 503 {
					t.Errorf("closed/%s: want a 503 rejection, got %+v", mod, out)
				}
			case FailFallback:
				if len(out.Agents) == 0 || out.Agents[0] == "a" {
					t.Errorf("fallback/%s: want the native HRW ranking, got %v", mod, out.Agents)
				}
			}
			// The next small call is served by the module again.
			small, err := h.Route(ctx, &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(1)})
			if err != nil || len(small.Agents) != 1 || small.Agents[0] != "a" {
				t.Errorf("%s/%s: the call after a failure got %+v, %v; want the module's answer [a]", mode, mod, small, err)
			}
			st := h.Status()[0]
			if st.Traps != 1 || st.Fallbacks != 1 {
				t.Errorf("%s/%s: traps %d fallbacks %d, want 1 and 1", mode, mod, st.Traps, st.Fallbacks)
			}
		}
	}
}

func TestAModuleThatKeepsFailingIsTakenOutOfServiceVisiblyAndComesBack(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {BreakerFailures: 3, BreakerBackoff: 200 * time.Millisecond}}})
	if _, err := h.Load(ctx, SlotRoute, testModule(t, "trap-late"), "trap-late"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, _ = h.Route(ctx, bigInput())
	}
	if st := h.Status()[0]; st.Breaker != "open" {
		t.Fatalf("after 3 traps the breaker is %q, want open", st.Breaker)
	}
	traps := h.Status()[0].Traps
	out, _ := h.Route(ctx, &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(2)})
	if len(out.Agents) != 2 || h.Status()[0].Traps != traps {
		t.Fatalf("while open, calls must fall back without touching the module: %+v", out)
	}
	time.Sleep(250 * time.Millisecond)
	out, _ = h.Route(ctx, &abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: candidates(2)})
	if len(out.Agents) != 1 || out.Agents[0] != "a" {
		t.Fatalf("after the backoff the module should serve again, got %+v", out)
	}
}

func rssBytes() int64 {
	b, _ := os.ReadFile("/proc/self/statm")
	var size, rss int64
	_, _ = fmt.Sscan(string(b), &size, &rss)
	return rss * int64(os.Getpagesize())
}

func TestAMillionTrappingCallsNeitherCrashNorGrowTheHost(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {BreakerFailures: -1, Pool: 8}}})
	if _, err := h.Load(ctx, SlotRoute, testModule(t, "trap-late"), "trap-late"); err != nil {
		t.Fatal(err)
	}
	in := bigInput()
	const n = 1_000_000
	warm := 20_000
	for i := 0; i < warm; i++ {
		_, _ = h.Route(ctx, in)
	}
	debug.FreeOSMemory()
	rss0, g0 := rssBytes(), runtime.NumGoroutine()
	for i := warm; i < n; i++ {
		out, err := h.Route(ctx, in)
		if err != nil || len(out.Agents) == 0 {
			t.Fatalf("call %d: %+v %v", i, out, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	debug.FreeOSMemory()
	rss1, g1 := rssBytes(), runtime.NumGoroutine()
	st := h.Status()[0]
	t.Logf("%d calls, %d traps, RSS %d → %d MiB, goroutines %d → %d", st.Calls, st.Traps, rss0>>20, rss1>>20, g0, g1)
	if st.Traps < n*9/10 {
		t.Fatalf("only %d of %d calls trapped: the test did not exercise the trap path", st.Traps, n)
	}
	if rss1 > rss0+rss0/10+16<<20 {
		t.Fatalf("RSS grew from %d MiB to %d MiB over %d trapping calls", rss0>>20, rss1>>20, n)
	}
	if g1 > g0+10 {
		t.Fatalf("goroutines grew from %d to %d", g0, g1)
	}
}

// TestALoopingCallIsStoppedAtItsDeadlineAndTheErrorSaysSo: the preempt rewrite
// and the watchdog stop a guest that never returns, and the slot reports why.
func TestALoopingCallIsStoppedAtItsDeadlineAndTheErrorSaysSo(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Failure: FailClosed, Deadline: 50 * time.Millisecond, BreakerFailures: -1}}})
	if _, err := h.Load(ctx, SlotRoute, testModule(t, "loop-late"), "loop-late"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // each time on a fresh instance
		out, err := h.Route(ctx, bigInput())
		if err != nil || out.Reject == nil || out.Reject.Status != 503 {
			t.Fatalf("call %d: %+v, %v; want the closed failure's 503", i, out, err)
		}
		if !strings.Contains(out.Reject.Reason, "exceeded the 50ms deadline") {
			t.Fatalf("call %d: reason %q does not name the deadline", i, out.Reject.Reason)
		}
	}
	if st := h.Status()[0]; st.Traps != 3 {
		t.Fatalf("traps = %d, want 3", st.Traps)
	}
}

// TestRunawayCallsOnEveryProcessorAreAllStopped: with a looping call on every P,
// the watchdog still gets to run and stop them all (the rewrite makes guests
// yield to Go's scheduler now and then).
func TestRunawayCallsOnEveryProcessorAreAllStopped(t *testing.T) {
	ctx := context.Background()
	n := runtime.GOMAXPROCS(0) + 1
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Pool: n, Failure: FailClosed, Deadline: 50 * time.Millisecond, BreakerFailures: -1}}})
	if _, err := h.Load(ctx, SlotRoute, testModule(t, "loop-late"), "loop-late"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			out, err := h.Route(ctx, bigInput())
			switch {
			case err != nil:
				errs <- err.Error()
			case out.Reject == nil || !strings.Contains(out.Reject.Reason, "deadline"):
				errs <- fmt.Sprintf("%+v", out)
			default:
				errs <- ""
			}
		}()
	}
	for i := 0; i < n; i++ {
		if e := <-errs; e != "" {
			t.Errorf("a runaway call ended with %s; want a rejection naming the deadline", e)
		}
	}
}
