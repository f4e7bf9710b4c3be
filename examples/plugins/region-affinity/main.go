// Command region-affinity is an example route policy: it prefers agents whose
// "region" tag matches the client's region, taken from the X-Region header the
// gateway passes on (or the policy's "default-region" config value), and ranks
// agents within a region by rendezvous hashing so a stream keeps its agent.
//
// Build it with `sluice plugin build examples/plugins/region-affinity`, load it
// with `curl -X PUT --data-binary @region-affinity.wasm http://127.0.0.1:8080/v1/plugins/route`.
package main

import (
	"cmp"
	"slices"

	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk"
	"github.com/sluicegw/sluice/sdk/abi"
)

func route(in *sdk.RouteInput) sdk.RouteOutput {
	region := in.Headers.Value("X-Region")
	if region == "" {
		region, _ = sdk.Config("default-region")
	}
	type ranked struct {
		id    string
		local bool
		score uint64
	}
	var rs []ranked
	h := abi.Hash(in.StreamID) // once: policy.ScoreOf scores each agent with it
	for i := range in.Candidates {
		c := &in.Candidates[i]
		if !in.Eligible(c) { // serving, and offers the purpose asked for
			continue
		}
		if c.Capacity > 0 && c.Load >= c.Capacity {
			continue
		}
		rs = append(rs, ranked{c.ID, region != "" && c.Tags.Value("region") == region, policy.ScoreOf(h, c)})
	}
	if len(rs) == 0 {
		return sdk.RouteOutput{Reject: &sdk.Rejection{Status: 503, Reason: "no agent with room"}}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if a.local != b.local {
			if a.local {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.score, a.score)
	})
	out := sdk.RouteOutput{Agents: in.AgentList(len(rs))} // memory the SDK reuses
	for _, r := range rs {
		out.Agents = append(out.Agents, r.id)
	}
	if rs[0].local {
		sdk.MetricAdd("local_placements", 1)
	}
	return out
}

func init() { sdk.HandleRoute(route) }

func main() {}
