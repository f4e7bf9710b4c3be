package abi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// agents makes n serving agents, as the gateway describes them.
func agents(n int) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		id := fmt.Sprintf("agent-%02d", i)
		cs[i] = Candidate{ID: id, Tags: MakePairs("id", id, "region", "eu"), Purposes: []string{"relay"}, Capacity: 50, Load: i % 5, State: "serving"}
	}
	return cs
}

// sameInput reports whether a and b encode alike (nil and empty lists are one message).
func sameInput(a, b *RouteInput) bool {
	return bytes.Equal(AppendRouteInput(nil, a), AppendRouteInput(nil, b))
}

// TestTheGuestReceivesEveryInputExactlyWhileUnchangedCandidatesAreNotResent
// drives the host's encoder and the guest's decoder through what a cluster does
// to the agent list between decisions — nothing, a load change, an agent
// joining, leaving or being skipped, a reordering, a new list — and through
// failed calls after which the host cannot know what the guest holds. The guest
// must see each input exactly, and an unchanged list must cost a few bytes.
func TestTheGuestReceivesEveryInputExactlyWhileUnchangedCandidatesAreNotResent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var enc RouteEncoder
	var dec RouteDecoder
	cs := agents(16)
	in := RouteInput{StreamID: "cam-1", Op: OpPublish, Protocol: "whip", Purpose: "relay"}
	var got RouteInput
	reset := true
	for step := range 2000 {
		changed := true
		switch k := rng.IntN(10); k {
		case 0, 1, 2:
			changed = false
		case 3:
			cs[rng.IntN(len(cs))].Load++
		case 4: // an agent joins
			i := rng.IntN(len(cs) + 1)
			cs = slices.Insert(cs, i, Candidate{ID: fmt.Sprintf("new-%d", step), Purposes: []string{"relay", "record"}, State: "serving"})
		case 5: // an agent leaves
			if len(cs) > 1 {
				i := rng.IntN(len(cs))
				cs = slices.Delete(slices.Clone(cs), i, i+1)
			}
		case 6:
			rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
		case 7:
			cs[rng.IntN(len(cs))].State = "draining"
		case 8:
			cs = agents(1 + rng.IntN(40))
		case 9: // the gateway rebuilds the list: equal values, new memory
			cs = slices.Clone(cs)
			for i := range cs {
				cs[i].ID = strings.Clone(cs[i].ID)
				cs[i].Purposes = slices.Clone(cs[i].Purposes)
			}
			changed = false
		}
		in.Candidates = cs
		b := enc.Append(nil, &in)
		if err := dec.Decode(b, &got); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !sameInput(&in, &got) {
			t.Fatalf("step %d: the guest decoded\n%+v\nthe host sent\n%+v", step, got, in)
		}
		// Unchanged: the header, the count and one run of the whole list.
		if head := len(AppendRouteInput(nil, &RouteInput{StreamID: in.StreamID, Op: in.Op, Protocol: in.Protocol, Purpose: in.Purpose})); !changed && !reset && len(b) > head+4 {
			t.Fatalf("step %d: an unchanged list of %d took %d bytes (%d in full)", step, len(cs), len(b), len(AppendRouteInput(nil, &in)))
		}
		if reset = rng.IntN(20) == 0; reset {
			enc.Reset() // the call failed: the next input goes in full
		} else {
			enc.Commit()
		}
		// The handler may reorder its copy without disturbing what is held.
		slices.Reverse(got.Candidates)
	}
}

// TestAGuestThatLostItsCandidatesRefusesARunInsteadOfMisreadingIt: a run that
// refers past the guest's list is a decoding error, and the guest then holds
// nothing, so it cannot be misled by a later run either.
func TestAGuestThatLostItsCandidatesRefusesARunInsteadOfMisreadingIt(t *testing.T) {
	var enc RouteEncoder
	in := RouteInput{StreamID: "s", Candidates: agents(4)}
	enc.Append(nil, &in)
	enc.Commit()
	run := enc.Append(nil, &in) // refers to four candidates the guest never saw
	var dec RouteDecoder
	var got RouteInput
	if err := dec.Decode(run, &got); !errors.Is(err, ErrDecode) {
		t.Fatalf("err = %v", err)
	}
	if err := dec.Decode(AppendRouteInput(nil, &in), &got); err != nil || !sameInput(&in, &got) {
		t.Fatalf("a full input after the error: %v", err)
	}
}

// TestASteadyDecisionAllocatesNothingInTheGuestSDK: with the candidates held,
// decoding allocates nothing, and a policy answering in AgentList neither.
func TestASteadyDecisionAllocatesNothingInTheGuestSDK(t *testing.T) {
	var enc RouteEncoder
	var dec RouteDecoder
	in := RouteInput{StreamID: "s", Op: OpPublish, Purpose: "relay", Candidates: agents(16)}
	var got RouteInput
	dec.Decode(enc.Append(nil, &in), &got)
	enc.Commit()
	b := enc.Append(nil, &in)
	out := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		if err := dec.Decode(b, &got); err != nil {
			t.Fatal(err)
		}
		agents := got.AgentList(len(got.Candidates))
		for i := range got.Candidates {
			agents = append(agents, got.Candidates[i].ID)
		}
		out = AppendRouteOutput(out[:0], &RouteOutput{Agents: agents})
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per decision", allocs)
	}
	a, b2 := got.AgentList(1), got.AgentList(1)
	a, b2 = append(a, "x"), append(b2, "y")
	if a[0] != "x" || b2[0] != "y" {
		t.Fatal("a second AgentList in one call shares the first one's memory")
	}
}

// TestAChangingAgentListAllocatesNothingInTheGuestSDKOnceItsMemoryHasGrown:
// the memory of a candidate that arrives in full is reused once no held
// candidate is in it, so agents whose load keeps changing make no garbage for
// the guest's collector.
func TestAChangingAgentListAllocatesNothingInTheGuestSDKOnceItsMemoryHasGrown(t *testing.T) {
	var enc RouteEncoder
	var dec RouteDecoder
	var got RouteInput
	a := RouteInput{StreamID: "s", Op: OpPublish, Purpose: "relay", Candidates: agents(16)}
	b := a
	b.Candidates = slices.Clone(a.Candidates)
	b.Candidates[3].Load++                                                // one agent's load changes
	b.Candidates[9], b.Candidates[10] = b.Candidates[10], b.Candidates[9] // and two swap places
	decode := func(in *RouteInput) []byte {
		m := enc.Append(nil, in)
		if err := dec.Decode(m, &got); err != nil || !slices.EqualFunc(got.Candidates, in.Candidates, sameFields) {
			t.Fatalf("decoded %v (%v), want %v", got.Candidates, err, in.Candidates)
		}
		enc.Commit()
		return m
	}
	full := decode(&a)
	toB, toA := decode(&b), decode(&a)
	if len(toB) > len(full)/3 || len(toA) > len(full)/3 {
		t.Fatalf("messages of %d and %d bytes against %d for the full list: the unchanged agents were resent", len(toB), len(toA), len(full))
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, m := range [][]byte{toB, toA} {
			if err := dec.Decode(m, &got); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per two decisions", allocs)
	}
	if !slices.EqualFunc(got.Candidates, a.Candidates, sameFields) {
		t.Fatalf("after the reuse the guest holds %v, want %v", got.Candidates, a.Candidates)
	}
}

// TestEveryAgentChangingEveryDecisionAllocatesNothingAfterOneAtATime: after
// agents changed one at a time (a chunk each), whole lists arriving every
// decision reuse the chunk of the previous whole list rather than growing, and
// giving back, a small one every time.
func TestEveryAgentChangingEveryDecisionAllocatesNothingAfterOneAtATime(t *testing.T) {
	var enc RouteEncoder
	var dec RouteDecoder
	var got RouteInput
	in := RouteInput{StreamID: "s", Op: OpPublish, Purpose: "relay", Candidates: agents(64)}
	decode := func() []byte {
		m := enc.Append(nil, &in)
		if err := dec.Decode(m, &got); err != nil {
			t.Fatal(err)
		}
		enc.Commit()
		return m
	}
	decode()
	for i := range in.Candidates { // one at a time: a chunk each
		in.Candidates[i].Load++
		decode()
	}
	var whole [2][]byte // every agent changed, and back
	for k := range whole {
		for i := range in.Candidates {
			in.Candidates[i].Load ^= 1
		}
		whole[k] = decode()
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, m := range whole {
			if err := dec.Decode(m, &got); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per two whole lists", allocs)
	}
}

// TestTheDecodersMemoryStaysNearTheSizeOfTheListItHolds: agents change one at
// a time and the host resends the whole list every 200 decisions (as after a
// failed call); the chunks that held a resent list give their memory back
// instead of each keeping a list's worth for one agent.
func TestTheDecodersMemoryStaysNearTheSizeOfTheListItHolds(t *testing.T) {
	var enc RouteEncoder
	var dec RouteDecoder
	var got RouteInput
	in := RouteInput{StreamID: "s", Op: OpPublish, Purpose: "relay", Candidates: agents(128)}
	full := len(AppendRouteInput(nil, &in))
	r := rand.New(rand.NewPCG(3, 4))
	var most [2]int // in the first half of the decisions, and in the second
	const steps = 40000
	for step := range steps {
		in.Candidates[r.IntN(len(in.Candidates))].Load++
		if step%200 == 0 {
			enc.Reset()
		}
		if err := dec.Decode(enc.Append(nil, &in), &got); err != nil {
			t.Fatal(err)
		}
		enc.Commit()
		most[2*step/steps] = max(most[2*step/steps], dec.chunkBytes())
	}
	if !slices.EqualFunc(got.Candidates, in.Candidates, sameFields) {
		t.Fatal("the guest's list differs from the host's")
	}
	t.Logf("chunks at most %d then %d bytes for a list of %d", most[0], most[1], full)
	if most[1] > most[0]*11/10 {
		t.Fatalf("the decoder's memory grows: at most %d bytes in the first %d decisions, %d in the next", most[0], steps/2, most[1])
	}
	// Each held chunk's candidates plus what the decoder keeps for reuse, no
	// more than as much again: twice the list and its per-call chunks.
	if most[1] > 6*full {
		t.Fatalf("the decoder's chunks reached %d bytes for a list of %d", most[1], full)
	}
}

// TestAnInternedPurposeOutlivesTheChunkItArrivedIn: the decoder's table of
// purposes must not point into a chunk, which is reused once its candidates
// are gone, or every later candidate offering that purpose would read the new
// bytes.
func TestAnInternedPurposeOutlivesTheChunkItArrivedIn(t *testing.T) {
	var dec RouteDecoder
	var got RouteInput
	a := Candidate{ID: "a", Purposes: []string{"relay"}, State: "serving"}
	b := Candidate{ID: "b", Purposes: []string{"relay"}, State: "serving"}
	c := Candidate{ID: "c", Purposes: []string{"xxxxx"}, State: "serving"}
	decode := func(m []byte) {
		if err := dec.Decode(m, &got); err != nil {
			t.Fatal(err)
		}
	}
	decode(AppendRouteInput(nil, &RouteInput{StreamID: "s", Candidates: []Candidate{a}})) // "relay" interned from a's chunk
	decode(AppendRouteInput(nil, &RouteInput{StreamID: "s", Candidates: []Candidate{b}})) // a's chunk is free
	e := Encoder{}                                                                        // c arrives in full into a's chunk, b is held
	e.routeHeader(&RouteInput{StreamID: "s", Purpose: "xxxxx"})
	e.uvarint(2)
	e.uvarint(0)
	e.candidate(&c)
	e.run(0, 1)
	decode(e.B)
	for i := range got.Candidates {
		if c := &got.Candidates[i]; got.Eligible(c) != (c.Serving() && c.Offers(got.Purpose)) || c.ID == "b" && c.Purposes[0] != "relay" {
			t.Fatalf("%s offers %q, eligible for %q: %v; the interned purposes are %q", c.ID, c.Purposes, got.Purpose, got.Eligible(c), dec.purposes)
		}
	}
}

// sameFields compares what a policy sees of two candidates.
func sameFields(x, y Candidate) bool {
	return x.ID == y.ID && x.Tags.String() == y.Tags.String() && slices.Equal(x.Purposes, y.Purposes) &&
		x.Capacity == y.Capacity && x.Load == y.Load && x.Queue == y.Queue && x.State == y.State
}

// FuzzRouteDecoderMatchesReference holds the guest's decoder, with its fast
// paths and interning, to the reference decoder, over arbitrary messages and a
// held list: what the reference accepts, the guest decodes to the same input.
// The guest trusts the inside of a pair list (only the host writes it), so it
// may accept a message the reference refuses for a malformed pair list.
func FuzzRouteDecoderMatchesReference(f *testing.F) {
	held := RouteInput{Candidates: agents(5)}
	var enc RouteEncoder
	enc.Append(nil, &held)
	enc.Commit()
	next := held
	next.Candidates = slices.Clone(held.Candidates)
	next.Candidates[2].Load = 40
	next.Candidates = slices.Delete(next.Candidates, 0, 1)
	f.Add(enc.Append(nil, &next))
	f.Add(AppendRouteInput(nil, sampleRoute()))
	long := sampleRoute()
	long.StreamID = strings.Repeat("s", 200)
	long.Candidates[0].Capacity = 1 << 20
	f.Add(AppendRouteInput(nil, long))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ref RouteInput
		d := decoder{b: b}
		d.routeHeader(&ref)
		ref.Candidates = d.candidates(nil, held.Candidates)
		refErr := d.end()
		var dec RouteDecoder
		var got RouteInput
		if err := dec.Decode(AppendRouteInput(nil, &held), &got); err != nil {
			t.Fatal(err)
		}
		err := dec.Decode(b, &got)
		switch {
		case refErr == nil && err != nil:
			t.Fatalf("the reference decodes it, the guest refuses: %v", err)
		case refErr == nil && !sameInput(&ref, &got):
			t.Fatalf("guest decoded\n%+v\nreference\n%+v", got, ref)
		case refErr != nil && err == nil:
			for _, ps := range append([]Pairs{got.Headers}, tagsOf(got.Candidates)...) {
				for range ps.All() {
				}
				_ = ps.Value("x")
			}
			if !strings.Contains(refErr.Error(), "malformed map") {
				t.Fatalf("the guest accepts what the reference refuses for another reason: %v", refErr)
			}
		}
	})
}

func tagsOf(cs []Candidate) []Pairs {
	var out []Pairs
	for _, c := range cs {
		out = append(out, c.Tags)
	}
	return out
}

// guestMemory is a fake guest memory holding agent ids and their list laid out
// as a Go guest lays out a []string.
func guestMemory(ids ...string) (mem []byte, list uint32) {
	mem = make([]byte, 64)
	var refs []byte
	for _, id := range ids {
		refs = binary.LittleEndian.AppendUint64(refs, uint64(len(mem)))
		refs = binary.LittleEndian.AppendUint64(refs, uint64(len(id)))
		mem = append(mem, id...)
	}
	list = uint32(len(mem))
	return append(mem, refs...), list
}

// TestAnAnswerByReferenceIsReadFromGuestMemoryAndBadReferencesAreRefused: a Go
// guest answers with the address of its agent list; the host reads the ids
// there, and refuses, saying where, a list or an id outside memory, or more
// bytes than allowed.
func TestAnAnswerByReferenceIsReadFromGuestMemoryAndBadReferencesAreRefused(t *testing.T) {
	mem, list := guestMemory("agent-b", "agent-a", "")
	var out RouteOutput
	if err := DecodeRouteOutputFrom(AppendRouteAgentsRef(nil, list, 3), mem, 1024, &out); err != nil ||
		!slices.Equal(out.Agents, []string{"agent-b", "agent-a", ""}) || out.Reject != nil {
		t.Fatalf("%v %+v", err, out)
	}
	mem[0] = 'x' // the host's copy does not change with guest memory
	if out.Agents[0] != "agent-b" {
		t.Fatal("the ids alias guest memory")
	}
	for name, c := range map[string]struct {
		b   []byte
		max int
		msg string
	}{
		"list outside memory": {AppendRouteAgentsRef(nil, uint32(len(mem)-8), 3), 1024, "outside guest memory"},
		"no agents":           {AppendRouteAgentsRef(nil, list, 0), 1024, "0 agents"},
		"truncated":           {AppendRouteAgentsRef(nil, list, 3)[:3], 1024, "4-byte address"},
	} {
		err := DecodeRouteOutputFrom(c.b, mem, c.max, &out)
		if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want one saying %q", name, err, c.msg)
		}
	}
	bad := slices.Clone(mem)
	binary.LittleEndian.PutUint64(bad[list:], uint64(len(bad)-3)) // agent-b's 7 bytes run past the end
	if err := DecodeRouteOutputFrom(AppendRouteAgentsRef(nil, list, 3), bad, 1024, &out); err == nil || !strings.Contains(err.Error(), "agent 0 at") {
		t.Errorf("an id outside memory: %v", err)
	}
	long, at := guestMemory(strings.Repeat("x", 100))
	if err := DecodeRouteOutputFrom(AppendRouteAgentsRef(nil, at, 1), long, 64, &out); err == nil || !strings.Contains(err.Error(), "over 64 bytes in all") {
		t.Errorf("an id over the output limit: %v", err)
	}
	if err := DecodeRouteOutput(AppendRouteAgentsRef(nil, list, 3), &out); !errors.Is(err, ErrDecode) {
		t.Fatalf("without memory: %v", err)
	}
}

func FuzzDecodeRouteOutputFrom(f *testing.F) {
	mem, list := guestMemory("agent-b", "agent-a")
	f.Add(AppendRouteAgentsRef(nil, list, 2))
	f.Add(AppendRouteOutput(nil, &RouteOutput{Agents: []string{"a"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out RouteOutput
		if DecodeRouteOutputFrom(b, mem, 4096, &out) == nil && out.Reject == nil {
			for _, a := range out.Agents {
				if len(a) > len(mem) {
					t.Fatalf("agent of %d bytes from %d bytes of memory", len(a), len(mem))
				}
			}
		}
	})
}

// TestEligibleAgreesWithServingAndOffers: the flags a guest's decoder works
// out give the same answers as comparing the strings, for every state and
// purpose, including purposes no candidate offers and the empty one.
func TestEligibleAgreesWithServingAndOffers(t *testing.T) {
	cs := []Candidate{
		{ID: "", Purposes: []string{"relay"}, State: "serving"}, // no id: never eligible
		{ID: "a", Purposes: []string{"relay"}, State: "serving"},
		{ID: "b", Purposes: []string{"record", "relay"}, State: "draining"},
		{ID: "c", Purposes: []string{"record"}},
		{ID: "d", State: "serving"},
		{ID: "e", Purposes: []string{"relay"}, State: "weird"},
	}
	var dec RouteDecoder
	for _, purpose := range []string{"relay", "record", "", "transcode"} {
		in := RouteInput{Purpose: purpose, Candidates: cs}
		var got RouteInput
		if err := dec.Decode(AppendRouteInput(nil, &in), &got); err != nil {
			t.Fatal(err)
		}
		for i := range got.Candidates {
			c := &got.Candidates[i]
			if want := cs[i].ID != "" && cs[i].Serving() && cs[i].Offers(purpose); got.Eligible(c) != want || in.Eligible(&cs[i]) != want {
				t.Errorf("purpose %q, agent %s: Eligible = %v (native %v), want %v", purpose, c.ID, got.Eligible(c), in.Eligible(&cs[i]), want)
			}
		}
	}
}

// TestIDHashIsHashOfTheIDInAGuestAndNatively: the hash a guest's decoder
// keeps is the one a native candidate computes, for ids of every length
// around the eight-byte steps.
func TestIDHashIsHashOfTheIDInAGuestAndNatively(t *testing.T) {
	var cs []Candidate
	seen := map[uint64]string{}
	for n := range 25 {
		id := strings.Repeat("x", n) + "!"
		cs = append(cs, Candidate{ID: id})
		if other, dup := seen[Hash(id)]; dup {
			t.Fatalf("%q and %q hash alike", id, other)
		}
		seen[Hash(id)] = id
	}
	var dec RouteDecoder
	var got RouteInput
	if err := dec.Decode(AppendRouteInput(nil, &RouteInput{Candidates: cs}), &got); err != nil {
		t.Fatal(err)
	}
	for i := range cs {
		if h := got.Candidates[i].IDHash(); h != cs[i].IDHash() || h != Hash(cs[i].ID) {
			t.Fatalf("%q: guest %x, native %x", cs[i].ID, h, Hash(cs[i].ID))
		}
	}
}

// TestAVouchedForListIsNotComparedAndAnUnvouchedOneIs: with the caller's
// version unchanged, the host sends one run without looking at the list; a new
// version, no version, or a failed call make it compare (or resend) again.
func TestAVouchedForListIsNotComparedAndAnUnvouchedOneIs(t *testing.T) {
	var enc RouteEncoder
	var dec RouteDecoder
	var got RouteInput
	in := RouteInput{StreamID: "s", Candidates: agents(8), CandidatesVersion: 7}
	step := func(want string) {
		t.Helper()
		b := enc.Append(nil, &in)
		if err := dec.Decode(b, &got); err != nil {
			t.Fatal(err)
		}
		enc.Commit()
		if !sameInput(&in, &got) {
			t.Fatalf("%s: the guest decoded %+v", want, got.Candidates)
		}
	}
	step("first, in full")
	// The caller breaks its promise, which shows that the list was not compared.
	in.Candidates = agents(8)
	in.Candidates[3].Load = 99
	b := enc.Append(nil, &in)
	if err := dec.Decode(b, &got); err != nil || got.Candidates[3].Load == 99 {
		t.Fatalf("a vouched-for list was compared: %v %+v", err, got.Candidates[3])
	}
	enc.Commit()
	in.CandidatesVersion = 8
	step("a new version is compared")
	in.CandidatesVersion = 0
	in.Candidates[3].Load = 5
	step("no version is compared")
	enc.Reset()
	in.CandidatesVersion = 8
	step("after a failed call, in full")
}
