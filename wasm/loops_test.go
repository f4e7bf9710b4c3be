package wasm_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/sluicegw/sluice/internal/wasmbuild"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

// TestAGoGuestComputesTheSameWithItsLoopsRestructured: testdata/loops is a Go
// policy whose answer is a checksum of code in every loop shape the Go
// compiler emits, goroutine switches and recovered panics inside loops
// included. The preempt rewrite gives those loops Wasm loops of their own
// (internal/preempt/loops.go); a slot that runs the module as compiled
// (trusted: not rewritten) must answer every input exactly as the default slot
// does.
func TestAGoGuestComputesTheSameWithItsLoopsRestructured(t *testing.T) {
	out := filepath.Join(t.TempDir(), "loops.wasm")
	if err := wasmbuild.Build("testdata/loops", out); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var hosts [2]*wasm.Host
	for i, trusted := range []bool{true, false} {
		h, err := wasm.New(ctx, wasm.Config{CacheDir: t.TempDir(), Slots: map[string]wasm.SlotConfig{
			wasm.SlotRoute: {Module: out, Failure: wasm.FailClosed, Trusted: trusted, Pool: 1},
		}}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close(ctx)
		hosts[i] = h
	}
	cands := []abi.Candidate{{ID: "a", Purposes: []string{"relay"}, State: "serving"}}
	for i := range 300 {
		in := &abi.RouteInput{StreamID: "stream-" + strconv.Itoa(i*7919), Op: abi.OpPublish, Purpose: "relay", Candidates: cands}
		var got [2]abi.RouteOutput
		for k, h := range hosts {
			res, err := h.Route(ctx, in)
			if err != nil || res.Reject != nil || len(res.Agents) != 10 {
				t.Fatalf("%s: slot %d answered %+v, %v", in.StreamID, k, res, err)
			}
			got[k] = res
		}
		if !slices.Equal(got[0].Agents, got[1].Agents) {
			t.Fatalf("%s: as compiled %q, rewritten %q", in.StreamID, got[0].Agents, got[1].Agents)
		}
	}
}
