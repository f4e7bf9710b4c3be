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
	out := filepath.Join(t.TempDir(), "spin.wasm")
	if err := wasmbuild.Build("testdata/spin", out); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := wasm.New(ctx, wasm.Config{CacheDir: t.TempDir(), Slots: map[string]wasm.SlotConfig{
		wasm.SlotRoute: {Module: out, Failure: wasm.FailClosed, Deadline: 50 * time.Millisecond, BreakerFailures: -1, Pool: 1},
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
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
