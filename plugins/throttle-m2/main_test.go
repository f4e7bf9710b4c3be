package main

import (
	"context"
	"reflect"
	"testing"

	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/sdktest"
	"github.com/sluicegw/sluice/wasm/wasmtest"
)

var config = map[string]string{
	"relay.enable": "true", "relay.wait.deactive": "2", "relay.wait.reactive": "1",
	"relay.matchingList": `[{"pattern":"^/whep/","action":"error"}]`,
}

func TestTheThrottleDecidesAlikeInTheEmulatorAndInTheRealHost(t *testing.T) {
	emu := sdktest.New(config)
	h := wasmtest.Host(t, ".", "throttle", config)
	// The queue rises past concurrent×deactive, then falls below concurrent×reactive.
	want := []abi.Action{abi.Admit, abi.Reject, abi.Reject, abi.Admit}
	for i, queued := range []int{3, 4, 2, 1} {
		in := &abi.ThrottleInput{Kind: "play", StreamID: "s", Path: "/whep/s", Protocol: "whep", Pools: []abi.PoolFigures{{Purpose: "relay", Concurrent: 2, Queued: queued}}}
		native, err := emu.Throttle(in)
		if err != nil {
			t.Fatal(err)
		}
		viaWasm, err := h.Throttle(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(native, viaWasm) {
			t.Fatalf("step %d: emulator %+v, host %+v", i, native, viaWasm)
		}
		if viaWasm.Action != want[i] {
			t.Fatalf("step %d (queue %d): %v, want %v", i, queued, viaWasm.Action, want[i])
		}
		if viaWasm.Action == abi.Reject && (viaWasm.Status != 510 || string(viaWasm.Body) != `{"enable":false,"error":"throttle"}`) {
			t.Fatalf("step %d: the M2 error contract is 510 {\"enable\":false,\"error\":\"throttle\"}, got %d %s", i, viaWasm.Status, viaWasm.Body)
		}
	}
	if emu.KV("throttled.relay") != 0 {
		t.Fatal("the emulator's shared store should say not throttled at the end")
	}
}
