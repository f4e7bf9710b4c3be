package main

import (
	"testing"

	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/sdktest"
	"github.com/sluicegw/sluice/wasm/wasmtest"
)

func input(region string) *abi.RouteInput {
	in := &abi.RouteInput{StreamID: "cam-7", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: wasmtest.Candidates(9)}
	if region != "" {
		in.Headers = abi.MakePairs("X-Region", region)
	}
	return in
}

func TestAgentsInTheClientsRegionComeFirst(t *testing.T) {
	emu := sdktest.New(map[string]string{"default-region": "ap"})
	for _, region := range []string{"eu", "us"} {
		out, err := emu.Route(input(region))
		if err != nil {
			t.Fatal(err)
		}
		// Candidates(9) puts agents 0,3,6 in eu, 1,4,7 in us, 2,5,8 in ap.
		for _, id := range out.Agents[:3] {
			if tagOf(id) != region {
				t.Fatalf("region %s: first three agents %v include %s from %s", region, out.Agents[:3], id, tagOf(id))
			}
		}
	}
	out, _ := emu.Route(input(""))
	if tagOf(out.Agents[0]) != "ap" {
		t.Fatalf("without a header the default region ap comes first: %v", out.Agents)
	}
	if emu.Metric("local_placements") != 3 {
		t.Fatalf("local_placements = %d, want 3", emu.Metric("local_placements"))
	}
}

func tagOf(id string) string {
	for _, c := range wasmtest.Candidates(9) {
		if c.ID == id {
			return c.Tags.Value("region")
		}
	}
	return ""
}

// TestTheExampleBuildsLoadsAndDecidesInTheRealHost builds the example to Wasm,
// loads it into a policy host and checks it ranks as in the emulator.
func TestTheExampleBuildsLoadsAndDecidesInTheRealHost(t *testing.T) {
	cfg := map[string]string{"default-region": "us"}
	emu := sdktest.New(cfg)
	h := wasmtest.Host(t, ".", "route", cfg)
	wasmtest.SameRoutes(t, emu, h, []*abi.RouteInput{input("eu"), input("ap"), input("")})
}
