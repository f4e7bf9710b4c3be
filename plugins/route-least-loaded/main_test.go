package main

import (
	"testing"

	"github.com/sluicegw/sluice/wasm/wasmtest"
)

func TestThePolicyRanksAlikeInTheEmulatorAndInTheRealHost(t *testing.T) {
	wasmtest.CheckRouteModule(t, ".")
}
