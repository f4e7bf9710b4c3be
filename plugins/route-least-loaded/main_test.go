package main

import (
	"fmt"
	"testing"

	"github.com/sluicegw/sluice/internal/policytest"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/sdktest"
)

func TestThePolicyRanksAlikeInTheEmulatorAndInTheRealHost(t *testing.T) {
	emu := sdktest.New(nil)
	h := policytest.Host(t, ".", "route", nil)
	var inputs []*abi.RouteInput
	for i := 0; i < 40; i++ {
		inputs = append(inputs, &abi.RouteInput{StreamID: fmt.Sprintf("s-%d", i), Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: policytest.Candidates(1 + i%17)})
	}
	inputs = append(inputs, &abi.RouteInput{StreamID: "none", Op: abi.OpPublish, Purpose: "record", Candidates: policytest.Candidates(4)})
	outs := policytest.SameRoutes(t, emu, h, inputs)
	if outs[len(outs)-1].Reject == nil {
		t.Fatal("no agent serves record: want a rejection")
	}
}
