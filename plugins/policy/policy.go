// Package policy holds the logic of sluice's built-in policies in plain Go: the
// Wasm plugins in ../route-hrw, ../route-least-loaded and ../throttle-m2 wrap it
// with the SDK, and the policy host uses the same code as its native fallback, so
// the fallback has exactly the built-ins' semantics.
package policy

import (
	"cmp"
	"slices"
	"unsafe"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Env is what a policy reads from its host: config values and the shared store.
type Env interface {
	Config(key string) (string, bool)
	KVGet(key string) int64
	KVSet(key string, v int64)
}

func noAgent(in *abi.RouteInput) abi.RouteOutput {
	return abi.RouteOutput{Reject: &abi.Rejection{Status: 503, Reason: "no agent serves purpose " + in.Purpose + " with room"}}
}

// Score is the rendezvous-hashing weight of agent id for stream: RouteHRW ranks
// agents by it, highest first. Its low 16 bits are zero; RouteHRW keeps an
// agent's position there.
func Score(stream, id string) uint64 {
	cs := [1]abi.Candidate{{ID: id}}
	ks := [1]uint64{}
	scoreAll(stream, cs[:], ks[:], -1)
	return ks[0]
}

// idxBits low bits of a ranking key hold the agent's position in the candidates.
const (
	idxBits = 16
	idxMask = 1<<idxBits - 1
)

// scoreAll keeps the positions in ks of the agents within the bounded load
// (load + 1 at most limit, and under capacity; limit -1 keeps all), moved to the
// front, and turns each into a ranking key: the weight of the agent for stream
// in the high bits, its position in the low ones, so that sorting keys ranks
// agents (equal weights, at odds of 2⁻⁴⁸, by position). It returns how many
// it kept.
//
// The weight: the hash folds a string in eight bytes at a time (the last eight
// overlapping the previous ones), or byte by byte when it is shorter,
// multiplying by odd constants in between (multiplicative, in the manner of
// FNV), continues from the stream's state over each id, and ends with
// MurmurHash3's finaliser, so that near-equal ids weigh unrelated amounts.
//
// It is one function for all agents, stream first (k = -1), because in a Go
// guest each call and each loop iteration costs several times what it does
// natively: this is most of a decision's work.
func scoreAll(stream string, cs []abi.Candidate, ks []uint64, limit int) int {
	h := uint64(0x243f6a8885a308d3)
	n := 0
	for k := -1; k < len(ks); k++ {
		x, s := h, stream
		if k >= 0 {
			c := &cs[ks[k]&idxMask]
			if limit >= 0 && (c.Load+1 > limit || c.Capacity > 0 && c.Load >= c.Capacity) {
				continue
			}
			x, s = h^0xff, c.ID // 0xff separates stream and id
		}
		if n := len(s); n >= 8 {
			for ; len(s) > 8; s = s[8:] {
				x = (x ^ load64(s, 0)) * 0x9e3779b97f4a7c15
			}
			x = (x ^ load64(s, len(s)-8)) * 0x9e3779b97f4a7c15 // the last eight, overlapping
		} else {
			for i := range n {
				x = (x ^ uint64(s[i])) * 0x100000001b3
			}
		}
		x = (x ^ uint64(len(s))) * 0x9e3779b97f4a7c15
		if k < 0 {
			h = x
			continue
		}
		x ^= x >> 33
		x *= 0xff51afd7ed558ccd
		x ^= x >> 33
		x *= 0xc4ceb9fe1a85ec53
		x ^= x >> 33
		ks[n] = x&^idxMask | ks[k]&idxMask
		n++
	}
	return n
}

// load64 reads the eight bytes of s from i, little-endian (s must hold them):
// one Wasm i64.load, where a byte-by-byte read is eight loads and shifts.
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i))
}

// RouteHRW ranks agents by rendezvous hashing of the stream id, with bounded
// load: an agent is offered only while its load stays within ⌈1.25 × the average⌉
// (counting the new stream) and under its capacity. A stream id keeps landing on
// the same agent while that agent is healthy and not overloaded; the agent that
// already carries the stream comes first. Plays are ranked without the bound, to
// find where a stream is. It considers the first 65,536 candidates.
//
// It allocates nothing in a guest (its answer goes in in.AgentList; up to 64
// agents its work in an array on the stack) and makes few loops and calls:
// policies run in Wasm guests, where every allocation, call and loop iteration
// costs several times what it does natively.
func RouteHRW(in *abi.RouteInput) abi.RouteOutput {
	cs := in.Candidates
	if len(cs) > 1<<idxBits {
		cs = cs[:1<<idxBits]
	}
	var keyBuf [64]uint64
	ks := keyBuf[:0] // positions, then ranking keys
	total := 1       // the new stream
	for i := range cs {
		if c := &cs[i]; in.Eligible(c) {
			ks = append(ks, uint64(i))
			total += c.Load
		}
	}
	// Bounded load, for a publish: load + 1 at most ⌈1.25 × (total load + 1) / n⌉,
	// and load under capacity (0 = unlimited).
	limit := -1
	if n := len(ks); in.Op == abi.OpPublish && n > 0 {
		limit = (5*total + 4*n - 1) / (4 * n)
	}
	// Keep the agents within the bound and score them, then rank them by
	// descending key: with a sorting network up to 16 agents and an insertion
	// sort up to 32 (neither calls anything in a guest), with the library's sort
	// of integers beyond.
	n := scoreAll(in.StreamID, cs, ks, limit)
	if n == 0 {
		return noAgent(in)
	}
	ks = ks[:n]
	var net [16]uint64
	if n <= 16 {
		copy(net[:], ks) // zeros after the keys sort last
		sortDesc16(&net)
		ks = net[:n]
	} else if n <= 32 {
		for k := 1; k < n; k++ {
			key, j := ks[k], k
			for ; j > 0 && ks[j-1] < key; j-- {
				ks[j] = ks[j-1]
			}
			ks[j] = key
		}
	} else {
		slices.Sort(ks)
		slices.Reverse(ks)
	}
	// The agent already carrying the stream comes first.
	agents := in.AgentList(n)
	if in.Placement != "" {
		for _, k := range ks {
			if cs[k&idxMask].ID == in.Placement {
				agents = append(agents, in.Placement)
				break
			}
		}
	}
	for _, k := range ks {
		if id := cs[k&idxMask].ID; id != in.Placement {
			agents = append(agents, id)
		}
	}
	return abi.RouteOutput{Agents: agents}
}

// RouteLeastLoaded ranks agents by load relative to capacity, then by queue depth,
// then by id, skipping full ones.
func RouteLeastLoaded(in *abi.RouteInput) abi.RouteOutput {
	var cands []abi.Candidate
	for i := range in.Candidates {
		c := &in.Candidates[i]
		if in.Eligible(c) && (in.Op != abi.OpPublish || c.Capacity <= 0 || c.Load < c.Capacity) {
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
