package main

import (
	"testing"

	"github.com/sluicegw/sluice/internal/policytest"
)

func TestThePolicyRanksAlikeInTheEmulatorAndInTheRealHost(t *testing.T) {
	policytest.CheckRouteModule(t, ".")
}
