// Command tight is a Go route policy made of one tight loop — it sums the
// agents' loads a thousand times before ranking them in order — for the
// benchmark of what structured loops are worth to loop-heavy Go guests
// (wasm/internal/preempt's BenchmarkGoGuestLoops).
package main

import "github.com/sluicegw/sluice/sdk"

var sink int

func route(in *sdk.RouteInput) sdk.RouteOutput {
	cs := in.Candidates
	s, j := 0, 0
	for range 1000 {
		s += cs[j].Load
		if j++; j == len(cs) {
			j = 0
		}
	}
	sink = s
	out := sdk.RouteOutput{Agents: in.AgentList(len(cs))}
	for i := range cs {
		out.Agents = append(out.Agents, cs[i].ID)
	}
	return out
}

func init() { sdk.HandleRoute(route) }

func main() {}
