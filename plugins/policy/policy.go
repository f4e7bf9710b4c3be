// Package policy holds the logic of sluice's built-in policies in plain Go: the
// Wasm plugins in ../route-hrw, ../route-least-loaded, ../throttle-m2 and
// ../auth-grants wrap it
// with the SDK, and the policy host uses the same code as its native fallback, so
// the fallback has exactly the built-ins' semantics.
package policy

import (
	"cmp"
	"math"
	"slices"
	"sync"

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
func Score(stream, id string) uint64 { return weight(abi.Hash(stream), abi.Hash(id)) &^ idxMask }

// ScoreOf is Score(stream, c.ID) given streamHash = abi.Hash(stream), for a
// policy that scores every agent for one stream: the stream is hashed once,
// and the id's hash is the one a guest's SDK keeps (Candidate.IDHash).
func ScoreOf(streamHash uint64, c *abi.Candidate) uint64 {
	return weight(streamHash, c.IDHash()) &^ idxMask
}

// weight mixes the hashes of a stream and an agent with MurmurHash3's
// finaliser: for one stream, agents' weights are unrelated to each other, and
// for one agent, across streams.
func weight(stream, agent uint64) uint64 { return abi.Mix(stream ^ agent) }

// idxBits low bits of a ranking key hold the agent's position in the
// candidates; its tierBits high bits, RouteHRW's group (within the bound, past
// it, full), never zero, so that a real key sorts above the zeros that pad a
// sorting network.
const (
	idxBits   = 16
	idxMask   = 1<<idxBits - 1
	tierBits  = 2
	tierShift = 64 - tierBits
)

// RouteHRW's groups, in the order they are offered.
const (
	tierWithin uint64 = 3 // room, load within the bound
	tierPast   uint64 = 2 // room, load past the bound
	tierFull   uint64 = 1 // at capacity: the request waits in the agent's queue
)

// RouteHRW ranks agents by rendezvous hashing of the stream id, with bounded
// load: for a publish, the agents whose load stays within ⌈1.25 × the average⌉
// (counting the new stream) and under their capacity come first, then those
// under their capacity but past the bound, then those at capacity, where the
// request waits in the agent's queue (M2's waitQueue; the agent refuses it once
// its queue is full, and the gateway tries the next). Within each group agents
// rank by their weight for the stream, so a stream id keeps landing on the same
// agent while that agent is healthy and not overloaded; the agent that already
// carries the stream comes first. Plays are ranked without the bound, to find
// where a stream is. It considers the first 65,536 candidates.
//
// It allocates nothing in a guest (its answer goes in in.AgentList; up to 128
// agents its work in an array on the stack) and makes few loops and calls:
// policies run in Wasm guests, where every allocation, call and loop iteration
// costs several times what it does natively.
func RouteHRW(in *abi.RouteInput) abi.RouteOutput {
	cs := in.Candidates
	if len(cs) > 1<<idxBits {
		cs = cs[:1<<idxBits]
	}
	var keyBuf [128]uint64
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
		if t := 5*total + 4*n - 1; t >= 0 {
			limit = int(uint(t) / uint(4*n)) // unsigned: no runtime call in a guest
		} else {
			limit = t / (4 * n) // negative loads: nothing fits
		}
	}
	// Turn each agent into a ranking key: its group in the top bits, its weight
	// for the stream below, its position in the low bits, so that sorting keys
	// ranks agents (equal weights, at odds of 2⁻⁴⁶, by position). An agent's id
	// hash is one a guest's SDK worked out when the agent arrived
	// (Candidate.IDHash), so this is a few instructions per agent.
	h := abi.Hash(in.StreamID)
	n := len(ks)
	if n == 0 {
		return noAgent(in)
	}
	for i, k := range ks {
		c := &cs[k&idxMask]
		tier := tierWithin
		switch {
		case limit < 0:
		case c.Capacity > 0 && c.Load >= c.Capacity:
			tier = tierFull
		case c.Load+1 > limit:
			tier = tierPast
		}
		ks[i] = tier<<tierShift | weight(h, c.IDHash())>>tierBits&^idxMask | k&idxMask // ScoreOf(h, c)>>tierBits, written out
	}
	// Rank by descending key: with a sorting network up to 16 agents and an
	// insertion sort up to 32 (neither calls anything in a guest), with the
	// library's sort of integers beyond.
	if n <= 16 {
		net := (*[16]uint64)(ks[:16]) // cap(ks) is at least 16
		clear(net[n:])                // zeros after the keys sort last
		sortDesc16(net)
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

// RouteLeastLoaded ranks agents by load relative to capacity (load itself when
// the capacity is unset), then by queue depth, then by id. For a publish, the
// agents at capacity come last, fewest waiting first: the request waits in the
// agent's queue (M2's waitQueue). Agents alike in every key keep their order.
func RouteLeastLoaded(in *abi.RouteInput) abi.RouteOutput {
	if len(in.Candidates) <= 32 {
		var keys [32]llKey
		out, _ := leastLoaded(in, keys[:0])
		return out
	}
	// Keys reused, not allocated per decision: a guest collects its garbage
	// during its calls. (A larger array above would cost every decision the
	// time to clear it.)
	p := manyKeys.Get().(*[]llKey)
	out, ks := leastLoaded(in, (*p)[:0])
	*p = ks[:0]
	manyKeys.Put(p)
	return out
}

// leastLoaded is RouteLeastLoaded with ks, empty, for the keys.
func leastLoaded(in *abi.RouteInput, ks []llKey) (abi.RouteOutput, []llKey) {
	cs := in.Candidates
	for i := range cs {
		c := &cs[i]
		if in.Eligible(c) {
			full := in.Op == abi.OpPublish && c.Capacity > 0 && c.Load >= c.Capacity
			ks = append(ks, llKey{full: full, ratio: relativeLoad(c), queue: c.Queue, i: i})
		}
	}
	if len(ks) == 0 {
		return noAgent(in), ks
	}
	if len(ks) <= 32 {
		// An insertion sort: stable, and no call per comparison in a guest.
		for k := 1; k < len(ks); k++ {
			key, j := ks[k], k
			for ; j > 0 && key.before(&ks[j-1], cs); j-- {
				ks[j] = ks[j-1]
			}
			ks[j] = key
		}
	} else {
		// Position breaks the last ties, so an unstable sort gives the stable order.
		slices.SortFunc(ks, func(a, b llKey) int {
			switch {
			case a.before(&b, cs):
				return -1
			case b.before(&a, cs):
				return 1
			}
			return cmp.Compare(a.i, b.i)
		})
	}
	agents := in.AgentList(len(ks))
	for _, k := range ks {
		agents = append(agents, cs[k.i].ID)
	}
	return abi.RouteOutput{Agents: agents}, ks
}

var manyKeys = sync.Pool{New: func() any { return new([]llKey) }}

// llKey is an agent as RouteLeastLoaded ranks it.
type llKey struct {
	full  bool   // at capacity, for a publish: ranked after every agent with room
	ratio uint64 // relativeLoad
	queue int
	i     int // position in the candidates
}

func (a *llKey) before(b *llKey, cs []abi.Candidate) bool {
	if a.full != b.full {
		return b.full
	}
	if a.full && a.queue != b.queue {
		return a.queue < b.queue // a full agent serves its queue first come, first served
	}
	if a.ratio != b.ratio {
		return a.ratio < b.ratio
	}
	if a.queue != b.queue {
		return a.queue < b.queue
	}
	return cs[a.i].ID < cs[b.i].ID
}

// relativeLoad is c's load divided by its capacity (its load when the
// capacity is unset), as a float64 whose bits are rearranged so that ordering
// them as integers orders the numbers: the sign bit flipped for a positive
// number, every bit for a negative one.
func relativeLoad(c *abi.Candidate) uint64 {
	r := float64(c.Load)
	if c.Capacity > 0 {
		r /= float64(c.Capacity)
	}
	u := math.Float64bits(r)
	if u>>63 != 0 {
		return ^u
	}
	return u | 1<<63
}
