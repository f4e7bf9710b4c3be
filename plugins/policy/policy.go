// Package policy holds the logic of sluice's built-in policies in plain Go: the
// Wasm plugins in ../route-hrw, ../route-least-loaded and ../throttle-m2 wrap it
// with the SDK, and the policy host uses the same code as its native fallback, so
// the fallback has exactly the built-ins' semantics.
package policy

import (
	"cmp"
	"slices"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Env is what a policy reads from its host: config values and the shared store.
type Env interface {
	Config(key string) (string, bool)
	KVGet(key string) int64
	KVSet(key string, v int64)
}

// eligible lists the candidates that serve the purpose and are serving.
func eligible(in *abi.RouteInput) []abi.Candidate {
	var out []abi.Candidate
	for _, c := range in.Candidates {
		if c.State != "" && c.State != "serving" {
			continue
		}
		if in.Purpose != "" && !slices.Contains(c.Purposes, in.Purpose) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func noAgent(in *abi.RouteInput) abi.RouteOutput {
	return abi.RouteOutput{Reject: &abi.Rejection{Status: 503, Reason: "no agent serves purpose " + in.Purpose + " with room"}}
}

// Score is the rendezvous-hashing weight of agent id for stream.
func Score(stream, id string) uint64 {
	// FNV-1a over stream, a zero byte and id, without allocating.
	const prime = 1099511628211
	x := uint64(14695981039346656037)
	for i := 0; i < len(stream); i++ {
		x = (x ^ uint64(stream[i])) * prime
	}
	x *= prime // the zero separator
	for i := 0; i < len(id); i++ {
		x = (x ^ uint64(id[i])) * prime
	}
	// FNV's low bits mix poorly for near-equal inputs; finish with a 64-bit mixer.
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// RouteHRW ranks agents by rendezvous hashing of the stream id, with bounded
// load: an agent is offered only while its load stays within ⌈1.25 × the average⌉
// (counting the new stream) and under its capacity. A stream id keeps landing on
// the same agent while that agent is healthy and not overloaded; the agent that
// already carries the stream comes first. Plays are ranked without the bound, to
// find where a stream is.
func RouteHRW(in *abi.RouteInput) abi.RouteOutput {
	cands := eligible(in)
	if in.Op == abi.OpPublish {
		cands = bounded(cands)
	}
	if len(cands) == 0 {
		return noAgent(in)
	}
	type scored struct {
		id    string
		score uint64
	}
	ss := make([]scored, len(cands))
	for i, c := range cands {
		ss[i] = scored{c.ID, Score(in.StreamID, c.ID)}
	}
	slices.SortFunc(ss, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	out := abi.RouteOutput{Agents: make([]string, 0, len(ss))}
	if in.Placement != "" && slices.ContainsFunc(ss, func(s scored) bool { return s.id == in.Placement }) {
		out.Agents = append(out.Agents, in.Placement)
	}
	for _, s := range ss {
		if s.id != in.Placement {
			out.Agents = append(out.Agents, s.id)
		}
	}
	return out
}

// bounded keeps the candidates that may take one more stream: load + 1 at most
// ⌈1.25 × (total load + 1) / n⌉, and load under capacity (0 = unlimited).
func bounded(cands []abi.Candidate) []abi.Candidate {
	if len(cands) == 0 {
		return nil
	}
	total := 1
	for _, c := range cands {
		total += c.Load
	}
	n := len(cands)
	limit := (5*total + 4*n - 1) / (4 * n) // ⌈1.25 × total / n⌉ in integers
	var out []abi.Candidate
	for _, c := range cands {
		if c.Load+1 > limit {
			continue
		}
		if c.Capacity > 0 && c.Load >= c.Capacity {
			continue
		}
		out = append(out, c)
	}
	return out
}

// RouteLeastLoaded ranks agents by load relative to capacity, then by queue depth,
// then by id, skipping full ones.
func RouteLeastLoaded(in *abi.RouteInput) abi.RouteOutput {
	cands := eligible(in)
	if in.Op == abi.OpPublish {
		cands = slices.DeleteFunc(cands, func(c abi.Candidate) bool { return c.Capacity > 0 && c.Load >= c.Capacity })
	}
	if len(cands) == 0 {
		return noAgent(in)
	}
	ratio := func(c abi.Candidate) float64 {
		if c.Capacity <= 0 {
			return float64(c.Load)
		}
		return float64(c.Load) / float64(c.Capacity)
	}
	slices.SortStableFunc(cands, func(a, b abi.Candidate) int {
		return cmp.Or(cmp.Compare(ratio(a), ratio(b)), cmp.Compare(a.Queue, b.Queue), cmp.Compare(a.ID, b.ID))
	})
	out := abi.RouteOutput{Agents: make([]string, 0, len(cands))}
	for _, c := range cands {
		out.Agents = append(out.Agents, c.ID)
	}
	return out
}
