package plugins_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/sluicegw/sluice/internal/benchlat"
	"github.com/sluicegw/sluice/plugins"
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/sdktest"
	"github.com/sluicegw/sluice/wasm"
	"github.com/sluicegw/sluice/wasm/wasmtest"
)

// BenchmarkBuiltins is a decision of every built-in policy through the policy
// host (encode, guest call, decode), as the gateway makes it, against the same
// policy compiled natively. Route decisions are over 16 and 128 candidates, the
// agent list numbered as the gateway numbers it between membership changes.
func BenchmarkBuiltins(b *testing.B) {
	ctx := context.Background()
	route := []struct {
		name   string
		native func(*abi.RouteInput) abi.RouteOutput
	}{{"route-hrw", policy.RouteHRW}, {"route-least-loaded", policy.RouteLeastLoaded}}
	for _, p := range route {
		h := builtinHost(b, wasm.SlotRoute, p.name, nil)
		for _, n := range []int{16, 128} {
			in := &abi.RouteInput{StreamID: "bench-stream", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay",
				Candidates: wasmtest.Candidates(n), CandidatesVersion: 1}
			b.Run(p.name+"/host/"+strconv.Itoa(n), func(b *testing.B) {
				benchlat.Report(b, func() {
					if out, err := h.Route(ctx, in); err != nil || len(out.Agents) == 0 {
						b.Fatal(out, err)
					}
				})
				noFallbacks(b, h)
			})
			b.Run(p.name+"/native/"+strconv.Itoa(n), func(b *testing.B) {
				benchlat.Report(b, func() {
					if out := p.native(in); len(out.Agents) == 0 {
						b.Fatal(out)
					}
				})
			})
		}
	}

	// throttle-m2 enabled for relay, its queue below the threshold: the
	// common decision, admit, made after reading the shared throttled state.
	config := map[string]string{"relay.enable": "true", "relay.wait.deactive": "4", "relay.wait.reactive": "2",
		"relay.matchingList": `[{"pattern":"^/whep/","action":"error"}]`}
	in := &abi.ThrottleInput{Kind: "play", StreamID: "s", Path: "/whep/s", Protocol: "whep",
		Pools: []abi.PoolFigures{{Purpose: "relay", Concurrent: 8, Active: 5, Queued: 3}}}
	h := builtinHost(b, wasm.SlotThrottle, "throttle-m2", config)
	b.Run("throttle-m2/host", func(b *testing.B) {
		benchlat.Report(b, func() {
			if out, err := h.Throttle(ctx, in); err != nil || out.Action != abi.Admit {
				b.Fatal(out, err)
			}
		})
		noFallbacks(b, h)
	})
	emu := sdktest.New(config) // the native policy's config and shared store
	m2, err := policy.NewM2(emu, "relay")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("throttle-m2/native", func(b *testing.B) {
		benchlat.Report(b, func() {
			if out := m2.Decide(emu, in); out.Action != abi.Admit {
				b.Fatal(out)
			}
		})
	})
}

// builtinHost is a policy host whose slot runs a built-in module.
func builtinHost(b *testing.B, slot, name string, config map[string]string) *wasm.Host {
	mod, err := plugins.Builtin(name)
	if err != nil {
		b.Fatal(err)
	}
	h, err := wasm.New(context.Background(), wasm.Config{CacheDir: b.TempDir(), Slots: map[string]wasm.SlotConfig{
		slot: {Module: "builtin:" + name, Pool: 1, Config: config},
	}, Builtins: map[string]wasm.Builtin{name: {Module: mod}}}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func noFallbacks(b *testing.B, h *wasm.Host) {
	for _, st := range h.Status() {
		if st.Fallbacks != 0 {
			b.Fatalf("slot %s fell back %d times: the benchmark did not measure the module", st.Slot, st.Fallbacks)
		}
	}
}
