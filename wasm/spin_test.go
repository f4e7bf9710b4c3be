package wasm_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/wasmbuild"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

// TestARunawayGoGuestIsStoppedAtItsDeadlineAndTheNextCallDecides: a Go policy
// that loops forever, built with the SDK as authors build theirs, is stopped at
// its deadline by the preempt rewrite (whose direct jumps leave every loop
// polling), and the slot goes on deciding.
func TestARunawayGoGuestIsStoppedAtItsDeadlineAndTheNextCallDecides(t *testing.T) {
	ctx := context.Background()
	h := routeHost(t, wasm.SlotConfig{Module: goGuest(t, "testdata/spin"), Failure: wasm.FailClosed, Deadline: 50 * time.Millisecond, BreakerFailures: -1, Pool: 1})
	cands := []abi.Candidate{{ID: "a", Purposes: []string{"relay"}, State: "serving"}, {ID: "b", Purposes: []string{"relay"}, State: "serving"}}
	res, err := h.Route(ctx, &abi.RouteInput{StreamID: "spin", Op: abi.OpPublish, Purpose: "relay", Candidates: cands})
	if err != nil || res.Reject == nil || !strings.Contains(res.Reject.Reason, "exceeded the 50ms deadline") {
		t.Fatalf("the endless call gave %+v, %v; want the closed failure naming the deadline", res, err)
	}
	res, err = h.Route(ctx, &abi.RouteInput{StreamID: "cam", Op: abi.OpPublish, Purpose: "relay", Candidates: cands})
	if err != nil || len(res.Agents) != 2 {
		t.Fatalf("the next call gave %+v, %v", res, err)
	}
}

// goGuest builds the Go policy in dir as authors build theirs and returns the
// module's path.
func goGuest(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(dir)+".wasm")
	if err := wasmbuild.Build(dir, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// routeHost is a policy host with sc as its route slot, closed when the test ends.
func routeHost(t *testing.T, sc wasm.SlotConfig) *wasm.Host {
	t.Helper()
	ctx := context.Background()
	h, err := wasm.New(ctx, wasm.Config{CacheDir: t.TempDir(), Slots: map[string]wasm.SlotConfig{wasm.SlotRoute: sc}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(ctx) })
	return h
}

// TestClosingTheHostWhileATrappedInstanceIsReplacedWaitsForTheReplacement: a
// call stopped at its deadline leaves its instance to be replaced off the call
// path, and a Go guest's replacement runs its runtime's start-up in guest
// memory for milliseconds. Closing the host in that window must wait for it:
// closing the runtime under it frees the memory it is writing, which faulted
// the whole process (wasm/RATIONALE.md, Hot swap and memory). The wasm tests
// unmap freed memory at once (TestMain), so a use after the close crashes
// this test binary rather than reading zeros.
func TestClosingTheHostWhileATrappedInstanceIsReplacedWaitsForTheReplacement(t *testing.T) {
	ctx := context.Background()
	spin := goGuest(t, "testdata/spin")
	cands := []abi.Candidate{{ID: "a", Purposes: []string{"relay"}, State: "serving"}}
	for i := range 20 {
		h := routeHost(t, wasm.SlotConfig{Module: spin, Failure: wasm.FailClosed, Deadline: 20 * time.Millisecond, BreakerFailures: -1, Pool: 1})
		res, err := h.Route(ctx, &abi.RouteInput{StreamID: "spin", Op: abi.OpPublish, Purpose: "relay", Candidates: cands})
		if err != nil || res.Reject == nil {
			t.Fatalf("round %d: the endless call gave %+v, %v; want the closed failure", i, res, err)
		}
		// Its replacement is starting up now, for a few milliseconds: close
		// at a different moment of that each round.
		time.Sleep(time.Duration(i) * 500 * time.Microsecond)
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
