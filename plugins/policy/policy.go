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

// serves reports whether c is serving and offers the purpose ("" = any).
func serves(c *abi.Candidate, purpose string) bool {
	if c.State != "" && c.State != "serving" {
		return false
	}
	if purpose == "" {
		return true
	}
	for _, p := range c.Purposes {
		if p == purpose {
			return true
		}
	}
	return false
}

func noAgent(in *abi.RouteInput) abi.RouteOutput {
	return abi.RouteOutput{Reject: &abi.Rejection{Status: 503, Reason: "no agent serves purpose " + in.Purpose + " with room"}}
}

// FNV-1a's parameters.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Score is the rendezvous-hashing weight of agent id for stream.
func Score(stream, id string) uint64 { return scoreFrom(streamHash(stream), id) }

// streamHash is FNV-1a over stream and a zero separator: the part of Score that
// every candidate shares, computed once per decision.
func streamHash(stream string) uint64 {
	x := uint64(fnvOffset)
	for i := 0; i < len(stream); i++ {
		x = (x ^ uint64(stream[i])) * fnvPrime
	}
	return x * fnvPrime // the zero separator
}

// scoreFrom continues streamHash's FNV-1a over id and finishes with a 64-bit
// mixer (FNV's low bits mix poorly for near-equal inputs).
func scoreFrom(x uint64, id string) uint64 {
	for i := 0; i < len(id); i++ {
		x = (x ^ uint64(id[i])) * fnvPrime
	}
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
//
// It allocates only its output: policies run in Wasm guests, where every
// allocation and every call costs several times what it does natively.
func RouteHRW(in *abi.RouteInput) abi.RouteOutput {
	cs := in.Candidates
	var idxBuf [64]int32
	idx := idxBuf[:0]
	total := 1 // the new stream
	for i := range cs {
		if serves(&cs[i], in.Purpose) {
			idx = append(idx, int32(i))
			total += cs[i].Load
		}
	}
	if in.Op == abi.OpPublish && len(idx) > 0 {
		// Bounded load: load + 1 at most ⌈1.25 × (total load + 1) / n⌉, and load
		// under capacity (0 = unlimited).
		n := len(idx)
		limit := (5*total + 4*n - 1) / (4 * n)
		kept := idx[:0]
		for _, i := range idx {
			c := &cs[i]
			if c.Load+1 <= limit && (c.Capacity <= 0 || c.Load < c.Capacity) {
				kept = append(kept, i)
			}
		}
		idx = kept
	}
	if len(idx) == 0 {
		return noAgent(in)
	}
	// Score, then sort by descending score: insertion sort while n is small
	// (branch-light code, no calls in a guest), the library's sort beyond.
	type ranked struct {
		score uint64
		i     int32
	}
	var rankBuf [64]ranked
	rs := rankBuf[:0]
	h := streamHash(in.StreamID)
	for _, i := range idx {
		rs = append(rs, ranked{scoreFrom(h, cs[i].ID), i})
	}
	if len(rs) <= 32 {
		for k := 1; k < len(rs); k++ {
			r, j := rs[k], k
			for ; j > 0 && rs[j-1].score < r.score; j-- {
				rs[j] = rs[j-1]
			}
			rs[j] = r
		}
	} else {
		slices.SortFunc(rs, func(a, b ranked) int { return cmp.Compare(b.score, a.score) })
	}
	// The agent already carrying the stream comes first.
	out := abi.RouteOutput{Agents: make([]string, 0, len(rs))}
	if in.Placement != "" {
		for _, r := range rs {
			if cs[r.i].ID == in.Placement {
				out.Agents = append(out.Agents, in.Placement)
				break
			}
		}
	}
	for _, r := range rs {
		if id := cs[r.i].ID; id != in.Placement {
			out.Agents = append(out.Agents, id)
		}
	}
	return out
}

// RouteLeastLoaded ranks agents by load relative to capacity, then by queue depth,
// then by id, skipping full ones.
func RouteLeastLoaded(in *abi.RouteInput) abi.RouteOutput {
	var cands []abi.Candidate
	for i := range in.Candidates {
		c := &in.Candidates[i]
		if serves(c, in.Purpose) && (in.Op != abi.OpPublish || c.Capacity <= 0 || c.Load < c.Capacity) {
			cands = append(cands, *c)
		}
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
