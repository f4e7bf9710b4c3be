// Command throttle-m2 is the built-in throttle policy: M2's throttling with
// deactive / reactive hysteresis and matchingList actions (see
// plugins/policy.M2). Built to throttle-m2.wasm by `go generate ./plugins`.
package main

import (
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk"
)

var m2 *policy.M2

func throttle(in *sdk.ThrottleInput) sdk.ThrottleOutput {
	if m2 == nil {
		var purposes []string
		for _, p := range in.Pools {
			purposes = append(purposes, p.Purpose)
		}
		m, err := policy.NewM2(sdk.HostEnv{}, purposes...)
		if err != nil {
			sdk.Log(sdk.LevelError, "throttle-m2: "+err.Error())
			return sdk.ThrottleOutput{Action: sdk.Admit}
		}
		m2 = m
	}
	return m2.Decide(sdk.HostEnv{}, in)
}

func init() { sdk.HandleThrottle(throttle) }

func main() {}
