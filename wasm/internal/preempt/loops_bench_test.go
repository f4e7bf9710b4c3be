package preempt

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicegw/sluice/internal/wasmbuild"
	"github.com/sluicegw/sluice/plugins"
	"github.com/sluicegw/sluice/sdk/abi"
)

// BenchmarkGoGuestLoops is a decision of the built-in route policies, Go
// guests, and of wasm/testdata/tight, a policy of one tight loop, over 16 and
// 128 agents, rewritten with their loops structured
// (loops.go) and without (every iteration through the dispatcher): what
// loops.go is worth to a Go guest. Both have the polls and direct jumps. The
// two run in turns of 256 decisions, so that the machine's noise falls on
// both alike, and it reports each one's time per decision and their ratio.
// The guest is called as the policy host calls it, with the agent list it
// holds referred to, not resent; its host functions do nothing.
func BenchmarkGoGuestLoops(b *testing.B) {
	ctx := context.Background()
	tight := filepath.Join(b.TempDir(), "tight.wasm")
	if err := wasmbuild.Build("../../testdata/tight", tight); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"route-hrw", "route-least-loaded", "tight"} {
		orig, err := plugins.Builtin(name)
		if name == "tight" {
			orig, err = os.ReadFile(tight)
		}
		if err != nil {
			b.Fatal(err)
		}
		var variants [2][]byte // dispatcher, loops
		for i, structured := range []bool{false, true} {
			structureLoops = structured
			variants[i], err = Rewrite(orig)
			structureLoops = true
			if err != nil {
				b.Fatal(err)
			}
		}
		for _, n := range []int{16, 128} {
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				cs := make([]abi.Candidate, n)
				for i := range cs {
					id := "agent-" + strconv.Itoa(i)
					cs[i] = abi.Candidate{ID: id, Tags: abi.MakePairs("id", id, "region", "eu"), Purposes: []string{"relay"}, Capacity: 100, Load: i % 7, State: "serving"}
				}
				in := &abi.RouteInput{StreamID: "bench-stream", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: cs}
				var decide [2]func([]byte)
				var input [2][]byte
				for v, m := range variants {
					decide[v] = guest(ctx, b, m)
					var enc abi.RouteEncoder
					decide[v](enc.Append(nil, in))
					enc.Commit()
					input[v] = enc.Append(nil, in)
				}
				var spent [2]time.Duration
				b.ResetTimer()
				for done := 0; done < b.N; {
					turn := min(256, b.N-done)
					for v := range decide {
						start := time.Now()
						for range turn {
							decide[v](input[v])
						}
						spent[v] += time.Since(start)
					}
					done += turn
				}
				b.StopTimer()
				b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "dispatcher-ns/op")
				b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "loops-ns/op")
				b.ReportMetric(float64(spent[1])/float64(spent[0]), "loops/dispatcher")
			})
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
