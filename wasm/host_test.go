package wasm

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newHost starts a host with cfg, with sluice's built-ins unless cfg has
// built-ins of its own, closed when the test ends.
func newHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir(t)
	}
	if cfg.Builtins == nil {
		cfg = withBuiltins(t, cfg)
	}
	h, err := New(context.Background(), cfg, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func candidates(n int) []abi.Candidate {
	cs := make([]abi.Candidate, n)
	for i := range cs {
		cs[i] = abi.Candidate{ID: "agent-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Purposes: []string{"relay"}, Capacity: 100, Load: i % 7, State: "serving"}
	}
	return cs
}

func TestBuiltInRoutePolicyDecidesThroughTheHostLikeTheNativeCode(t *testing.T) {
	h := newHost(t, Config{})
	in := &abi.RouteInput{StreamID: "cam-1", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: candidates(16)}
	out, err := h.Route(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Agents) == 0 || out.Reject != nil {
		t.Fatalf("route = %+v", out)
	}
	st := h.Status()
	for _, s := range st {
		if s.Slot == "route" && (s.Calls != 1 || s.Fallbacks != 0 || s.Module == nil || s.Module.ABI != 1) {
			t.Fatalf("route slot status = %+v", s)
		}
	}
}

// TestRouteDecisionsStayExactWhileTheAgentListChanges: the host sends a guest
// only the candidates it does not hold (abi.RouteEncoder); with several
// instances, each holding a different list, and the list changing between
// decisions as a cluster's does, every decision must still equal the native
// policy's.
func TestRouteDecisionsStayExactWhileTheAgentListChanges(t *testing.T) {
	h := newHost(t, Config{Slots: map[string]SlotConfig{SlotRoute: {Pool: 3}}})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 9))
	cs := candidates(12)
	for step := range 400 {
		switch rng.IntN(6) {
		case 0:
			cs[rng.IntN(len(cs))].Load = rng.IntN(9)
		case 1:
			cs = slices.Insert(slices.Clone(cs), rng.IntN(len(cs)+1), abi.Candidate{ID: "joined-" + itoa(step), Purposes: []string{"relay"}, Capacity: 5, State: "serving"})
		case 2:
			if len(cs) > 2 {
				i := rng.IntN(len(cs))
				cs = slices.Delete(slices.Clone(cs), i, i+1)
			}
		case 3:
			cs[rng.IntN(len(cs))].State = "draining"
		}
		in := &abi.RouteInput{StreamID: "cam-" + itoa(rng.IntN(50)), Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: cs}
		if rng.IntN(3) == 0 {
			in.Op = abi.OpPlay
		}
		// Concurrent callers spread the calls over the instances.
		var wg sync.WaitGroup
		outs := make([]abi.RouteOutput, 3)
		for k := range outs {
			wg.Go(func() {
				out, err := h.Route(ctx, in)
				if err != nil {
					t.Error(err)
				}
				outs[k] = out
			})
		}
		wg.Wait()
		want := policy.RouteHRW(in)
		for _, out := range outs {
			if !reflect.DeepEqual(out, want) {
				t.Fatalf("step %d: host %+v, native %+v", step, out, want)
			}
		}
	}
	if st := h.Status()[0]; st.Fallbacks != 0 || st.Calls != 1200 {
		t.Fatalf("status %+v: want 1200 calls decided by the module", st)
	}
}

// Closing the host while deciders are calling waits for the calls in flight,
// then closes the instances: a guest running in memory that closing unmaps
// would fault the whole process. Calls after Close decide by the failure
// setting (the native fallback here) and still answer.
func TestClosingTheHostWhileCallsAreInFlightWaitsForThemAndDecidesAfterByTheFallback(t *testing.T) {
	h := newHost(t, Config{})
	in := &abi.RouteInput{StreamID: "cam-1", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: candidates(16)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := h.Route(context.Background(), in)
				calls.Add(1)
				if err != nil || len(out.Agents) == 0 {
					failed.Add(1)
				}
			}
		}()
	}
	for calls.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := calls.Load()
	for calls.Load() < after+200 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d decisions failed around Close", failed.Load(), calls.Load())
	}
	st := h.Status()
	for _, s := range st {
		if s.Slot == "route" && s.Fallbacks == 0 {
			t.Fatal("no call after Close fell back to the native policy")
		}
	}
}
