// Package wasmtest runs a policy's decisions twice — natively through the SDK's
// host emulator (sdk/sdktest) and as Wasm through the real policy host — so a
// plugin's tests prove that both give the same answers. It is for tests: it
// builds modules with the Go toolchain and reports through testing.T.
package wasmtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sluicegw/sluice/internal/wasmbuild"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/sdktest"
	"github.com/sluicegw/sluice/wasm"
)

// Host builds the Go policy in dir to Wasm and loads it into a real host's slot,
// with config values; the slot fails closed with no breaker, so every failure
// shows. The other slot has no module. The host is closed when the test ends.
func Host(t *testing.T, dir, slot string, config map[string]string) *wasm.Host {
	t.Helper()
	out := filepath.Join(t.TempDir(), "policy.wasm")
	if err := wasmbuild.Build(dir, out); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(os.TempDir(), "sluice-wasmtest-cache")
	h, err := wasm.New(context.Background(), wasm.Config{CacheDir: cache, Slots: map[string]wasm.SlotConfig{
		slot: {Module: out, Config: config, Failure: wasm.FailClosed, BreakerFailures: -1},
	}}, slog.New(slog.NewTextHandler(testLog{t}, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// SameRoutes checks that the emulator and the host rank every input alike, and
// returns the host's answers.
func SameRoutes(t *testing.T, emu *sdktest.Host, h *wasm.Host, inputs []*abi.RouteInput) []abi.RouteOutput {
	t.Helper()
	var outs []abi.RouteOutput
	for i, in := range inputs {
		native, err := emu.Route(in)
		if err != nil {
			t.Fatalf("input %d through the emulator: %v", i, err)
		}
		viaWasm, err := h.Route(context.Background(), in)
		if err != nil {
			t.Fatalf("input %d through the host: %v", i, err)
		}
		if !reflect.DeepEqual(native, viaWasm) {
			t.Fatalf("input %d: emulator %s, host %s", i, show(native), show(viaWasm))
		}
		outs = append(outs, viaWasm)
	}
	if st := h.Status(); st[0].Fallbacks+st[1].Fallbacks != 0 {
		t.Fatalf("the host fell back %d times: the module did not decide", st[0].Fallbacks+st[1].Fallbacks)
	}
	return outs
}

func show(o abi.RouteOutput) string {
	if o.Reject != nil {
		return fmt.Sprintf("reject %d %q", o.Reject.Status, o.Reject.Reason)
	}
	return fmt.Sprint(o.Agents)
}

// Candidates makes n serving relay agents with varied loads.
func Candidates(n int) []abi.Candidate {
	out := make([]abi.Candidate, n)
	for i := range out {
		out[i] = abi.Candidate{ID: fmt.Sprintf("agent-%02d", i), Purposes: []string{"relay"}, Capacity: 50, Load: (i * 7) % 13, Queue: i % 3, State: "serving",
			Tags: abi.MakePairs("region", []string{"eu", "us", "ap"}[i%3])}
	}
	return out
}

// testLog sends the host's log to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }

var _ io.Writer = testLog{}

// CheckRouteModule builds the route policy in dir and checks that the emulator and
// the real host rank 40 varied inputs alike, and that both reject a purpose no
// agent serves.
func CheckRouteModule(t *testing.T, dir string) {
	t.Helper()
	emu := sdktest.New(nil)
	h := Host(t, dir, "route", nil)
	var inputs []*abi.RouteInput
	for i := 0; i < 40; i++ {
		inputs = append(inputs, &abi.RouteInput{StreamID: fmt.Sprintf("s-%d", i), Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: Candidates(1 + i%17)})
	}
	inputs = append(inputs, &abi.RouteInput{StreamID: "none", Op: abi.OpPublish, Purpose: "record", Candidates: Candidates(4)})
	outs := SameRoutes(t, emu, h, inputs)
	if outs[len(outs)-1].Reject == nil {
		t.Fatal("no agent serves record: want a rejection")
	}
}
