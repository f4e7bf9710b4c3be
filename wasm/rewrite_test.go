package wasm_test

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

// TestAGoGuestComputesTheSameRewrittenAsCompiled: testdata/loops is a Go
// policy whose answer is a checksum of code in every loop shape the Go
// compiler emits, goroutine switches and recovered panics inside loops
// included. The preempt rewrite puts polls in its loops and makes the forward
// jumps of its dispatch loops direct; a slot that runs the module as compiled
// (trusted: not rewritten) must answer every input exactly as the default
// slot does.
func TestAGoGuestComputesTheSameRewrittenAsCompiled(t *testing.T) {
	out := goGuest(t, "testdata/loops")
	ctx := context.Background()
	var hosts [2]*wasm.Host
	for i, trusted := range []bool{true, false} {
		hosts[i] = routeHost(t, wasm.SlotConfig{Module: out, Failure: wasm.FailClosed, Trusted: trusted, Pool: 1})
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
