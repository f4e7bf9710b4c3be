// Command spin is a Go route policy that never returns for the stream "spin"
// and ranks agents in order otherwise: the Go guest of the host's tests that
// runaway Go code, compiled as Go compiles it (jumps and all), is stopped.
package main

import "github.com/sluicegw/sluice/sdk"

var sink int

func route(in *sdk.RouteInput) sdk.RouteOutput {
	for i := 0; in.StreamID == "spin"; i++ {
		if i%3 == 0 { // forward jumps inside the endless loop
			sink++
		}
	}
	out := sdk.RouteOutput{Agents: in.AgentList(len(in.Candidates))}
	for _, c := range in.Candidates {
		out.Agents = append(out.Agents, c.ID)
	}
	return out
}

func init() { sdk.HandleRoute(route) }

func main() {}
