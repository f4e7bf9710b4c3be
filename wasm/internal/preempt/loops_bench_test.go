package preempt

import (
	"context"
	"strconv"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicegw/sluice/plugins"
	"github.com/sluicegw/sluice/sdk/abi"
)

// BenchmarkGoGuestLoops is a decision of the built-in route policies, Go
// guests, over 16 and 128 agents, rewritten with their loops structured
// (loops.go) and without (every iteration through the dispatcher): what
// loops.go is worth to a Go guest. Both have the polls and direct jumps. The
// guest is called as the policy host calls it, with the agent list it holds
// referred to, not resent; its host functions do nothing.
func BenchmarkGoGuestLoops(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"route-hrw", "route-least-loaded"} {
		orig, err := plugins.Builtin(name)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{16, 128} {
			for _, structured := range []bool{false, true} {
				variant := map[bool]string{false: "dispatcher", true: "loops"}[structured]
				b.Run(name+"/"+strconv.Itoa(n)+"/"+variant, func(b *testing.B) {
					structureLoops = structured
					defer func() { structureLoops = true }()
					m, err := Rewrite(orig)
					if err != nil {
						b.Fatal(err)
					}
					decide := guest(ctx, b, m)
					cs := make([]abi.Candidate, n)
					for i := range cs {
						id := "agent-" + strconv.Itoa(i)
						cs[i] = abi.Candidate{ID: id, Tags: abi.MakePairs("id", id, "region", "eu"), Purposes: []string{"relay"}, Capacity: 100, Load: i % 7, State: "serving"}
					}
					in := &abi.RouteInput{StreamID: "bench-stream", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: cs}
					var enc abi.RouteEncoder
					decide(enc.Append(nil, in))
					enc.Commit()
					input := enc.Append(nil, in)
					b.ResetTimer()
					for range b.N {
						decide(input)
					}
				})
			}
		}
	}
}

// guest instantiates a rewritten policy module with host functions that do
// nothing, and returns a function that decides an encoded route input.
func guest(ctx context.Context, b *testing.B, m []byte) func([]byte) {
	rt := wazero.NewRuntime(ctx)
	b.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	_, err := rt.NewHostModuleBuilder("sluice").
		NewFunctionBuilder().WithFunc(func(int32, uint32, uint32) {}).Export("log").
		NewFunctionBuilder().WithFunc(func() int64 { return 0 }).Export("now").
		NewFunctionBuilder().WithFunc(func(uint32, uint32, uint32, uint32) int32 { return -1 }).Export("config_get").
		NewFunctionBuilder().WithFunc(func(uint32, uint32, int64) int64 { return 0 }).Export("kv_add").
		NewFunctionBuilder().WithFunc(func(uint32, uint32) int64 { return 0 }).Export("kv_get").
		NewFunctionBuilder().WithFunc(func(uint32, uint32, int64) {}).Export("kv_set").
		NewFunctionBuilder().WithFunc(func(uint32, uint32, int64) {}).Export("metric_add").
		Instantiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	mod, err := rt.InstantiateWithConfig(ctx, m, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		b.Fatal(err)
	}
	alloc, route := mod.ExportedFunction("sluice_alloc"), mod.ExportedFunction("sluice_route")
	stack := make([]uint64, 2)
	stack[0] = 1 << 16
	if err := alloc.CallWithStack(ctx, stack); err != nil {
		b.Fatal(err)
	}
	ptr := uint32(stack[0])
	mem := mod.Memory()
	return func(input []byte) {
		call(ctx, b, mem, route, ptr, input, stack)
	}
}

func call(ctx context.Context, b *testing.B, mem api.Memory, route api.Function, ptr uint32, input []byte, stack []uint64) {
	if !mem.Write(ptr, input) {
		b.Fatal("input outside memory")
	}
	stack[0], stack[1] = uint64(ptr), uint64(len(input))
	if err := route.CallWithStack(ctx, stack); err != nil || uint32(stack[0]) == 0 {
		b.Fatalf("the guest did not decide: %v", err)
	}
}
