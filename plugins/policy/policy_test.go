package policy

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/sluicegw/sluice/sdk/abi"
)

func cands(loads ...int) []abi.Candidate {
	out := make([]abi.Candidate, len(loads))
	for i, l := range loads {
		out[i] = abi.Candidate{ID: fmt.Sprintf("agent-%d", i), Purposes: []string{"relay"}, Capacity: 100, Load: l, State: "serving"}
	}
	return out
}

func TestHRWKeepsAStreamOnTheSameAgentAndMovesFewStreamsWhenOneLeaves(t *testing.T) {
	all := cands(0, 0, 0, 0, 0)
	moved, total := 0, 1000
	for i := 0; i < total; i++ {
		s := fmt.Sprintf("stream-%d", i)
		a := RouteHRW(&abi.RouteInput{StreamID: s, Op: abi.OpPublish, Purpose: "relay", Candidates: all}).Agents[0]
		if again := RouteHRW(&abi.RouteInput{StreamID: s, Op: abi.OpPublish, Purpose: "relay", Candidates: all}).Agents[0]; again != a {
			t.Fatalf("%s went to %s, then %s", s, a, again)
		}
		b := RouteHRW(&abi.RouteInput{StreamID: s, Op: abi.OpPublish, Purpose: "relay", Candidates: all[1:]}).Agents[0]
		if a != "agent-0" && b != a {
			moved++
		}
	}
	if moved != 0 {
		t.Fatalf("%d streams not on the removed agent moved", moved)
	}
}

func TestHRWOffersAgentsWithinTheLoadBoundFirstThenPastItThenThoseAtCapacity(t *testing.T) {
	c := cands(10, 0, 0, 0, 1)
	c[2].Capacity = 0 // unlimited
	c[3].Capacity, c[3].Load = 2, 2
	c[4].Capacity = 1 // full too
	total := 1 + 10 + 0 + 0 + 2 + 1
	limit := int(math.Ceil(1.25 * float64(total) / 5))
	group := func(x abi.Candidate) int {
		switch {
		case x.Capacity > 0 && x.Load >= x.Capacity:
			return 2 // waits in the agent's queue
		case x.Load+1 > limit:
			return 1
		}
		return 0
	}
	full := map[string]bool{}
	for i := 0; i < 200; i++ {
		out := RouteHRW(&abi.RouteInput{StreamID: fmt.Sprint(i), Op: abi.OpPublish, Purpose: "relay", Candidates: c})
		if len(out.Agents) != len(c) {
			t.Fatalf("stream %d: offered %v; want every agent, the full ones to wait in their queue", i, out.Agents)
		}
		last := 0
		for _, id := range out.Agents {
			x := c[slices.IndexFunc(c, func(x abi.Candidate) bool { return x.ID == id })]
			g := group(x)
			if g < last {
				t.Fatalf("stream %d: %v offers %s (load %d, bound %d, capacity %d) after a lesser group", i, out.Agents, id, x.Load, limit, x.Capacity)
			}
			last = g
		}
		full[out.Agents[3]+">"+out.Agents[4]] = true // the two full agents, last
	}
	if len(full) != 2 {
		t.Fatalf("the two full agents were always offered in one order (%v): they must rank by weight per stream", full)
	}
}

func TestHRWSendsAStreamToTheAgentsQueueWhenEveryAgentIsFull(t *testing.T) {
	c := cands(2, 2)
	c[0].Capacity, c[1].Capacity = 2, 2
	out := RouteHRW(&abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: c})
	if out.Reject != nil || len(out.Agents) != 2 {
		t.Fatalf("every agent full: %+v; want both offered, to queue (M2's waitQueue)", out)
	}
}

func TestHRWPutsTheCurrentPlacementFirstAndRejectsWhenNothingFits(t *testing.T) {
	c := cands(1, 1, 1)
	out := RouteHRW(&abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Placement: "agent-2", Candidates: c})
	if out.Agents[0] != "agent-2" {
		t.Fatalf("placement not first: %v", out.Agents)
	}
	out = RouteHRW(&abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "record", Candidates: c})
	if out.Reject == nil || out.Reject.Status != 503 {
		t.Fatalf("no agent serves record, want 503: %+v", out)
	}
}

func TestLeastLoadedOrdersByRelativeLoadThenQueue(t *testing.T) {
	c := cands(50, 10, 10, 150)
	c[1].Queue = 3
	c[3].Capacity = 1000
	out := RouteLeastLoaded(&abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Candidates: c})
	want := []string{"agent-2", "agent-1", "agent-3", "agent-0"}
	if fmt.Sprint(out.Agents) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", out.Agents, want)
	}
}

type env struct {
	cfg map[string]string
	kv  map[string]int64
}

func (e *env) Config(k string) (string, bool) { v, ok := e.cfg[k]; return v, ok }
func (e *env) KVGet(k string) int64           { return e.kv[k] }
func (e *env) KVSet(k string, v int64)        { e.kv[k] = v }

func TestM2ThrottlesWithHysteresisAndAppliesTheMatchingAction(t *testing.T) {
	e := &env{cfg: map[string]string{
		"relay.enable": "true", "relay.wait.deactive": "4", "relay.wait.reactive": "2",
		"relay.matchingList": `[{"pattern":"^/whep/","action":"error"},{"pattern":"^/whip/vip-","action":"origin"},{"pattern":"^/whip/","action":"redirect"}]`,
		"relay.origin":       "https://origin.example",
	}, kv: map[string]int64{}}
	m, err := NewM2(e, "relay")
	if err != nil {
		t.Fatal(err)
	}
	decide := func(queued int, path string) abi.ThrottleOutput {
		return m.Decide(e, &abi.ThrottleInput{Kind: "play", Path: path, Pools: []abi.PoolFigures{{Purpose: "relay", Concurrent: 2, Queued: queued}}})
	}
	if out := decide(7, "/whep/a"); out.Action != abi.Admit {
		t.Fatalf("queue 7 < 2×4: want admit, got %v", out.Action)
	}
	out := decide(8, "/whep/a")
	if out.Action != abi.Reject || out.Status != 510 || string(out.Body) != ThrottleBody {
		t.Fatalf("queue 8 ≥ 2×4: want 510 %s, got %+v", ThrottleBody, out)
	}
	if out := decide(5, "/whip/vip-1"); out.Action != abi.Origin {
		t.Fatalf("still throttled at 5 (≥ 2×2): want origin, got %v", out.Action)
	}
	if out := decide(5, "/whip/x"); out.Action != abi.Redirect || out.URL != "https://origin.example/whip/x" {
		t.Fatalf("want redirect to the origin, got %+v", out)
	}
	if out := decide(5, "/v1/other"); out.Action != abi.Admit {
		t.Fatalf("a path no pattern matches passes: got %v", out.Action)
	}
	if out := decide(3, "/whep/a"); out.Action != abi.Admit {
		t.Fatalf("queue 3 < 2×2 leaves the throttled state: want admit, got %v", out.Action)
	}
	if out := decide(7, "/whep/a"); out.Action != abi.Admit {
		t.Fatalf("back under deactive: want admit, got %v", out.Action)
	}
}

func TestM2KeepsItsPurposesWhenTheInputBufferTheyCameFromIsReused(t *testing.T) {
	e := &env{cfg: map[string]string{"relay.enable": "true", "relay.wait.deactive": "1", "relay.wait.reactive": "1",
		"relay.matchingList": `[{"pattern":"^/whep/","action":"error"}]`}, kv: map[string]int64{}}
	// A guest builds M2 from its first input, decoded as a view: the purpose
	// points into the input buffer, which the next input overwrites.
	buf := []byte("relay")
	m, err := NewM2(e, unsafe.String(&buf[0], len(buf)))
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "xxxxx")
	out := m.Decide(e, &abi.ThrottleInput{Kind: "play", Path: "/whep/a", Pools: []abi.PoolFigures{{Purpose: "relay", Concurrent: 1, Queued: 1}}})
	if out.Status != 510 {
		t.Fatalf("queue 1 ≥ 1×1 after the buffer was reused: %+v; want 510", out)
	}
}

func TestM2RefusesBadConfigNamingTheKey(t *testing.T) {
	for key, val := range map[string]string{
		"relay.enable":        "maybe",
		"relay.wait.deactive": "-1",
		"relay.matchingList":  `[{"pattern":"(","action":"error"}]`,
	} {
		_, err := NewM2(&env{cfg: map[string]string{key: val}, kv: map[string]int64{}}, "relay")
		if err == nil || !contains(err.Error(), key[:len("relay.")]) {
			t.Errorf("%s=%s: err = %v", key, val, err)
		}
	}
	_, err := NewM2(&env{cfg: map[string]string{"relay.matchingList": `[{"pattern":"x","action":"explode"}]`}, kv: map[string]int64{}}, "relay")
	if err == nil || !contains(err.Error(), "action") {
		t.Errorf("bad action: err = %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestSortDesc16IsASortingNetwork: by the 0–1 principle, a comparator network
// that sorts every sequence of 0s and 1s sorts every sequence.
func TestSortDesc16IsASortingNetwork(t *testing.T) {
	for m := range 1 << 16 {
		var a [16]uint64
		for i := range a {
			a[i] = uint64(m >> i & 1)
		}
		sortDesc16(&a)
		for i := 1; i < 16; i++ {
			if a[i-1] < a[i] {
				t.Fatalf("input %016b sorted to %v", m, a)
			}
		}
	}
}

// TestHRWSpreadsStreamsEvenlyAndRanksEveryAgentFirstForSome: with equal loads
// and no bound (plays), 32,000 stream ids spread over 16 agents within 6% of
// the mean each, as a uniform hash would (σ ≈ 1.9%), and the second choice is
// spread as evenly.
func TestHRWSpreadsStreamsEvenlyAndRanksEveryAgentFirstForSome(t *testing.T) {
	cs := cands(make([]int, 16)...)
	first, second := map[string]int{}, map[string]int{}
	const streams = 32000
	for i := range streams {
		out := RouteHRW(&abi.RouteInput{StreamID: fmt.Sprintf("cam-%d.example", i), Op: abi.OpPlay, Purpose: "relay", Candidates: cs})
		first[out.Agents[0]]++
		second[out.Agents[1]]++
	}
	for _, m := range []map[string]int{first, second} {
		for _, c := range cs {
			if dev := math.Abs(float64(m[c.ID])/(streams/16) - 1); dev > 0.06 {
				t.Errorf("%s: %d streams, %.1f%% off the mean", c.ID, m[c.ID], 100*dev)
			}
		}
	}
}

// leastLoadedReference is RouteLeastLoaded as first written: candidates
// copied, then a stable sort with a comparator of float ratios, queue and id
// (and agents without an id left out, as Eligible now does).
func leastLoadedReference(in *abi.RouteInput) abi.RouteOutput {
	var cands []abi.Candidate
	for _, c := range in.Candidates {
		if c.ID != "" && c.Serving() && c.Offers(in.Purpose) {
			cands = append(cands, c)
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
	full := func(c abi.Candidate) int { // full agents last, fewest waiting first
		if in.Op == abi.OpPublish && c.Capacity > 0 && c.Load >= c.Capacity {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(cands, func(a, b abi.Candidate) int {
		queue := 0
		if full(a) == 1 && full(b) == 1 {
			queue = cmp.Compare(a.Queue, b.Queue)
		}
		return cmp.Or(cmp.Compare(full(a), full(b)), queue, cmp.Compare(ratio(a), ratio(b)), cmp.Compare(a.Queue, b.Queue), cmp.Compare(a.ID, b.ID))
	})
	out := abi.RouteOutput{Agents: []string{}}
	for _, c := range cands {
		out.Agents = append(out.Agents, c.ID)
	}
	return out
}

func TestLeastLoadedRanksAsTheReferenceOnRandomAgents(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		n := r.IntN(80) // both sides of the 32-agent insertion sort
		cs := make([]abi.Candidate, n)
		for i := range cs {
			cs[i] = abi.Candidate{
				ID:       fmt.Sprintf("agent-%d", r.IntN(n+1)), // some ids repeat
				Purposes: [][]string{{"relay"}, {"record"}, {"relay", "record"}, nil}[r.IntN(4)],
				Capacity: r.IntN(12) - 1, Load: r.IntN(14) - 2, Queue: r.IntN(3),
				State: []string{"serving", "draining", ""}[r.IntN(3)],
			}
			if r.IntN(20) == 0 {
				cs[i].ID = "" // and some are missing
			}
		}
		in := &abi.RouteInput{StreamID: "s", Op: []string{abi.OpPublish, abi.OpPlay}[r.IntN(2)], Purpose: []string{"relay", "record", ""}[r.IntN(3)], Candidates: cs}
		got, want := RouteLeastLoaded(in), leastLoadedReference(in)
		if !slices.Equal(got.Agents, want.Agents) || !reflect.DeepEqual(got.Reject, want.Reject) {
			t.Fatalf("round %d, %d agents: got %v, want %v", round, n, got, want)
		}
	}
}

func TestHRWNeverOffersAnAgentWithoutAnID(t *testing.T) {
	c := cands(0, 0, 0)
	c[1].ID = ""
	for _, placement := range []string{"", "agent-2"} {
		out := RouteHRW(&abi.RouteInput{StreamID: "s", Op: abi.OpPublish, Purpose: "relay", Placement: placement, Candidates: c})
		if len(out.Agents) != 2 || slices.Contains(out.Agents, "") {
			t.Fatalf("placement %q: got %q, want agent-0 and agent-2", placement, out.Agents)
		}
	}
}
