package abi

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unsafe"
)

// A route input's candidates rarely change from one decision to the next: they
// are the cluster's agents, whose tags change at most about once a second. So
// the host does not send a guest candidates it already holds. Each entry of the
// candidate list is a candidate in full or a run of candidates from the list
// the same guest instance decoded in its previous call (ABI.md). A Go guest
// spends most of a decision decoding, so this is what makes a decision cost
// about what the policy costs.
//
// RouteEncoder is the host's side, one per guest instance; RouteDecoder is the
// guest's. The host refers only to a list it has committed, and commits only
// after a call that succeeded, so a guest that failed, or decoded a dry run the
// host did not send through its encoder, is never referred to blindly: at worst
// the host sends a list in full.

// RouteEncoder encodes route inputs for one guest instance.
type RouteEncoder struct {
	prev    []Candidate // what the guest holds, as committed
	next    []Candidate
	match   []int32 // per candidate of the pending input: its index in prev, or -1
	cs      []Candidate
	dirty   bool   // the pending input's list differs from prev
	version uint64 // prev's RouteInput.CandidatesVersion, or 0
	pending uint64 // the pending input's
}

// Append encodes in after b, referring to candidates the guest holds, and
// remembers in's candidates until Commit or Reset. in must not change until then.
func (e *RouteEncoder) Append(b []byte, in *RouteInput) []byte {
	enc := Encoder{b}
	enc.routeHeader(in)
	cs := in.Candidates
	enc.uvarint(uint64(len(cs)))
	e.cs, e.match, e.pending = cs, e.match[:0], in.CandidatesVersion
	if v := in.CandidatesVersion; v != 0 && v == e.version && len(cs) == len(e.prev) {
		enc.run(0, len(cs)) // the caller vouches for the list: nothing to compare
		e.dirty = false
		return enc.B
	}
	e.dirty = len(cs) != len(e.prev)
	prev := e.prev
	j := 0             // where in prev the next candidate is expected
	start, run := 0, 0 // the pending run of prev
	for i := range cs {
		c := &cs[i]
		m := -1
		switch {
		case j < len(prev) && sameCandidate(c, &prev[j]):
			m = j
		case j+1 < len(prev) && sameCandidate(c, &prev[j+1]): // one left
			m = j + 1
		}
		e.match = append(e.match, int32(m))
		if m >= 0 {
			if run > 0 && start+run == m {
				run++
			} else {
				enc.run(start, run)
				start, run = m, 1
			}
			j = m + 1
			e.dirty = e.dirty || m != i
			continue
		}
		enc.run(start, run)
		run = 0
		enc.uvarint(0)
		enc.candidate(c)
		e.dirty = true
		if j < len(prev) && prev[j].ID == c.ID { // it changed; one joined otherwise
			j++
		}
	}
	enc.run(start, run)
	return enc.B
}

func (e *Encoder) run(start, n int) {
	if n > 0 {
		e.uvarint(uint64(n))
		e.uvarint(uint64(start))
	}
}

// Commit records that the guest decoded the input Append encoded last.
func (e *RouteEncoder) Commit() {
	if e.dirty {
		next := e.next[:0]
		for i, m := range e.match {
			if m >= 0 {
				next = append(next, e.prev[m])
				continue
			}
			c := e.cs[i]
			c.Purposes = slices.Clone(c.Purposes) // the caller's slice may change
			next = append(next, c)
		}
		e.prev, e.next = next, e.prev
		e.dirty = false
	}
	e.cs, e.version = nil, e.pending
}

// Reset forgets what the guest holds (after a failed call, or for a new
// instance): the next input is sent in full.
func (e *RouteEncoder) Reset() {
	clear(e.prev)
	e.prev, e.cs, e.dirty, e.version = e.prev[:0], nil, false, 0
}

func sameCandidate(a, b *Candidate) bool {
	if a.Load != b.Load || a.Capacity != b.Capacity || a.Queue != b.Queue || a.Tags.n != b.Tags.n ||
		!same(a.ID, b.ID) || !same(a.State, b.State) || !same(a.Tags.enc, b.Tags.enc) || len(a.Purposes) != len(b.Purposes) {
		return false
	}
	for i, p := range a.Purposes {
		if !same(p, b.Purposes[i]) {
			return false
		}
	}
	return true
}

// RouteDecoder decodes route inputs in a guest, keeping the candidates of the
// previous input for the host to refer to. Candidates that arrive in full are
// copied, since they must outlive the host's input buffer, into a chunk of
// memory the decoder reuses once no candidate it holds is in that chunk: while
// agents change, it allocates nothing once its memory has grown to the
// cluster's size, and after the host resends a whole list it allocates once to
// give the list's chunk back. (Garbage in a Go guest is collected during its
// calls, where a collection, and the write barriers that run until it ends, slow
// decisions.)
type RouteDecoder struct {
	prev, cur []Candidate
	agents    []string // RouteInput.AgentList's memory
	purposes  []string // interned purposes
	chunks    []chunk  // Candidate.chunk-1 indexes it
	free      []int    // chunks no held candidate is in
}

// chunk is the memory of the candidates that arrived in full in one input.
type chunk struct {
	bytes []byte   // a copy of the input from the first of them
	strs  []string // their purposes
	refs  int      // held candidates in it
}

// The guest's strings are interned: a state is the literal "serving" or
// "draining", every candidate's copy of a purpose is one string, and the
// request's purpose is that string too. Comparing two strings costs a Go guest
// a byte loop, or nothing when both point to the same bytes, and a policy
// compares these for every candidate of every decision.

const maxInterned = 30 // purposes: one flag bit each

func (rd *RouteDecoder) intern(c *Candidate) {
	c.flags, c.idHash = flagDecoded, Hash(c.ID)
	switch c.State {
	case "":
		c.flags |= flagServing
	case "serving":
		c.State = "serving"
		c.flags |= flagServing
	case "draining":
		c.State = "draining"
	}
	if c.ID == "" {
		c.flags &^= flagServing // an agent without an id cannot be reached
	}
	for k, p := range c.Purposes {
		var i int
		c.Purposes[k], i = rd.internPurpose(p, true)
		if i >= 0 {
			c.flags |= 1 << i
		} else {
			c.flags = 0 // a purpose past the table: Eligible compares strings
			return
		}
	}
}

// internPurpose returns the interned copy of p and its index, or p and -1 when
// it is not interned (and add is false, or the table is full).
func (rd *RouteDecoder) internPurpose(p string, add bool) (string, int) {
	for i, q := range rd.purposes {
		if p == q {
			return q, i
		}
	}
	if add && len(rd.purposes) < maxInterned {
		p = strings.Clone(p) // not in a chunk, which is reused
		rd.purposes = append(rd.purposes, p)
		return p, len(rd.purposes) - 1
	}
	return p, -1
}

// Decode decodes b into in. The header's strings point into b and the
// candidates' into the decoder's memory, which a later Decode reuses: nothing of
// in may be kept past the decision. in's candidate slice is in's own copy,
// which the handler may reorder.
//
// Its errors go through failed, which forgets the candidates: the host sends
// the next list in full.
func (rd *RouteDecoder) Decode(b []byte, in *RouteInput) error {
	in.agents = rd.agents[:0] // AgentList's memory; grown below when the list grows
	var p int
	var ok bool
	// The header, read here rather than in a helper (a call costs a guest as
	// much as a string), by the reference decoder when its shape is uncommon.
	in.StreamID, p, ok = str1(b, 0)
	if ok {
		in.Op, p, ok = str1(b, p)
	}
	if ok {
		in.Protocol, p, ok = str1(b, p)
	}
	if ok {
		in.ClientAddr, p, ok = str1(b, p)
	}
	if ok {
		in.Headers, p, ok = pairs1(b, p)
	}
	if ok {
		in.Purpose, p, ok = str1(b, p)
	}
	if ok {
		in.Placement, p, ok = str1(b, p)
	}
	if !ok {
		d := decoder{b: b, view: true}
		d.routeHeader(in)
		if d.err != nil {
			return rd.failed(in, d.err)
		}
		p = len(b) - len(d.b)
	}
	var pi int
	in.Purpose, pi = rd.internPurpose(in.Purpose, false)
	switch {
	case in.Purpose == "":
		in.elig = flagDecoded | flagServing
	case pi >= 0:
		in.elig = flagDecoded | flagServing | 1<<pi
	default:
		in.elig = 0 // no candidate offers it, or too many purposes: compare strings
	}
	prev := rd.prev
	var err error
	n, p, ok := uv2(b, p) // inline: every call reads it
	if !ok {
		if n, p, err = uvSlow(b, p); err != nil {
			return rd.failed(in, err)
		}
	}
	if n > uint64(len(b)-p+len(prev)) {
		return rd.failed(in, fmt.Errorf("%w: count larger than the message", ErrDecode))
	}
	// The steady state: the whole list is the previous one.
	if q := p + 2; n > 0 && n < 0x80 && q == len(b) && uint64(b[p]) == n && b[p+1] == 0 && n == uint64(len(prev)) {
		in.Candidates = append(in.Candidates[:0], prev...)
		return nil
	}
	var own []byte // a copy of b[base:], from the first candidate in full
	base := 0
	var strs []string // their purposes
	ck := -1          // the chunk own and strs are in
	cur := rd.cur[:0]
	for uint64(len(cur)) < n {
		var r uint64
		if r, p, err = uvAt(b, p); err != nil {
			return rd.failed(in, err)
		}
		if r == 0 {
			if ck < 0 {
				ck = rd.takeChunk(len(b) - p)
				k := &rd.chunks[ck]
				k.bytes = append(k.bytes[:0], b[p:]...)
				own, base, strs = k.bytes, p, k.strs[:0]
			}
			cur = append(cur, Candidate{chunk: int32(ck + 1)})
			c := &cur[len(cur)-1]
			q, ok := candidateView(own, p-base, c, &strs)
			if !ok {
				d := decoder{b: own[p-base:], view: true, strArena: strs}
				d.candidate(c)
				if d.err != nil {
					return rd.failed(in, d.err)
				}
				q, strs = len(own)-len(d.b), d.strArena
			}
			p = base + q
			rd.intern(c)
			continue
		}
		var s uint64
		if s, p, err = uvAt(b, p); err != nil {
			return rd.failed(in, err)
		}
		if r > n-uint64(len(cur)) || s > uint64(len(prev)) || r > uint64(len(prev))-s {
			return rd.failed(in, fmt.Errorf("%w: run of %d candidates from %d: the previous input had %d", ErrDecode, r, s, len(prev)))
		}
		cur = append(cur, prev[s:s+r]...)
	}
	if p != len(b) {
		return rd.failed(in, fmt.Errorf("%w: %d trailing bytes", ErrDecode, len(b)-p))
	}
	if ck >= 0 {
		rd.chunks[ck].strs = strs // grown, perhaps
	}
	rd.release(cur)
	rd.prev, rd.cur = cur, prev[:0]
	in.Candidates = append(in.Candidates[:0], cur...)
	if len(cur) > cap(rd.agents) {
		rd.agents = make([]string, 0, len(cur))
		in.agents = rd.agents
	}
	return nil
}

// failed forgets the candidates after a failed decode: the host sends the next
// list in full. (Their chunks are freed when that list is decoded.)
func (rd *RouteDecoder) failed(in *RouteInput, err error) error {
	clear(rd.prev)
	rd.prev = rd.prev[:0]
	in.Candidates = in.Candidates[:0]
	return err
}

// takeChunk returns the index of a chunk no held candidate is in, for size
// bytes: the smallest free one large enough, or else the largest (which grows).
// A free chunk much larger than needed gives its memory back instead of keeping
// a whole list's worth for a few bytes.
func (rd *RouteDecoder) takeChunk(size int) int {
	if len(rd.free) == 0 {
		rd.chunks = append(rd.chunks, chunk{})
		return len(rd.chunks) - 1
	}
	fit, largest := -1, 0 // positions in rd.free
	for j, i := range rd.free {
		c := cap(rd.chunks[i].bytes)
		if c >= size && (fit < 0 || c < cap(rd.chunks[rd.free[fit]].bytes)) {
			fit = j
		}
		if c > cap(rd.chunks[rd.free[largest]].bytes) {
			largest = j
		}
	}
	if fit < 0 {
		fit = largest
	}
	i := rd.free[fit]
	rd.free[fit] = rd.free[len(rd.free)-1]
	rd.free = rd.free[:len(rd.free)-1]
	if k := &rd.chunks[i]; cap(k.bytes) > 4*size+256 {
		k.bytes, k.strs = nil, nil
	}
	return i
}

// chunkBytes is the memory the decoder's chunks hold.
func (rd *RouteDecoder) chunkBytes() int {
	n := 0
	for i := range rd.chunks {
		n += rd.chunks[i].size()
	}
	return n
}

// release counts the held candidates (held) in each chunk and frees the chunks
// with none, for later inputs to reuse. Free chunks keep their memory up to as
// much again as the held ones use (at least 4 KiB), the largest first, since it
// is the one a whole list resent or changed needs; the rest is given back.
func (rd *RouteDecoder) release(held []Candidate) {
	for i := range rd.chunks {
		rd.chunks[i].refs = 0
	}
	for i := range held {
		if k := held[i].chunk; k > 0 {
			rd.chunks[k-1].refs++
		}
	}
	live, largest := 0, -1
	for i := range rd.chunks {
		switch k := &rd.chunks[i]; {
		case k.refs > 0:
			live += k.size()
		case largest < 0 || k.size() > rd.chunks[largest].size():
			largest = i
		}
	}
	budget := max(live, 4<<10)
	keep := func(k *chunk) {
		if n := k.size(); n > budget {
			k.bytes, k.strs = nil, nil
		} else {
			budget -= n
		}
	}
	if largest >= 0 {
		keep(&rd.chunks[largest])
	}
	rd.free = rd.free[:0]
	for i := range rd.chunks {
		if rd.chunks[i].refs == 0 {
			if i != largest {
				keep(&rd.chunks[i])
			}
			rd.free = append(rd.free, i)
		}
	}
}

// size is the memory k holds.
func (k *chunk) size() int { return cap(k.bytes) + cap(k.strs)*int(unsafe.Sizeof("")) }

// The guest's fast path. A Go guest pays a Wasm call for every function call
// that is not inlined, and the reference decoder makes several per value. These
// helpers read the common shapes (varints of one or two bytes, strings under
// 128 bytes) and call nothing, so they inline; on anything else they report
// false and the reference decoder reads that part again.
// FuzzRouteDecoderMatchesReference holds the two to the same results.

// str1 reads a string whose length takes one byte.
func str1(b []byte, p int) (string, int, bool) {
	if p < len(b) {
		if n := int(b[p]); n < 0x80 && n < len(b)-p {
			return unsafe.String(unsafe.SliceData(b[p+1:]), n), p + 1 + n, true
		}
	}
	return "", p, false
}

// uv2 reads a uvarint of one or two bytes.
func uv2(b []byte, p int) (uint64, int, bool) {
	if p < len(b) {
		c := uint64(b[p])
		if c < 0x80 {
			return c, p + 1, true
		}
		if p+1 < len(b) && b[p+1] < 0x80 && b[p+1] != 0 {
			return c&0x7f | uint64(b[p+1])<<7, p + 2, true
		}
	}
	return 0, p, false
}

// uvAt reads a uvarint, short or not (a call: for reads off the steady path).
func uvAt(b []byte, p int) (uint64, int, error) {
	if v, q, ok := uv2(b, p); ok {
		return v, q, nil
	}
	return uvSlow(b, p)
}

// uvSlow reads a uvarint that uv2 did not.
func uvSlow(b []byte, p int) (uint64, int, error) {
	v, k := binary.Uvarint(b[p:])
	if k <= 0 {
		return 0, p, fmt.Errorf("%w: bad varint", ErrDecode)
	}
	return v, p + k, nil
}

// zz undoes zig-zag encoding.
func zz(u uint64) int { return int(int64(u>>1) ^ -int64(u&1)) }

// pairs1 reads a map whose count and byte length take a byte each, without
// looking inside: a guest trusts the host's encoding, and Pairs reads it only
// when the policy asks for a key.
func pairs1(b []byte, p int) (Pairs, int, bool) {
	if p+1 < len(b) {
		n, m := int(b[p]), int(b[p+1])
		if n < 0x80 && m < 0x80 && m < len(b)-p-1 && (n == 0) == (m == 0) {
			return Pairs{n: n, enc: unsafe.String(unsafe.SliceData(b[p+2:]), m)}, p + 2 + m, true
		}
	}
	return Pairs{}, p, false
}

// candidateView reads a candidate at b[p:] into c, its purposes appended to
// *strs; it reports false, with p unchanged, on a shape it leaves to the
// reference decoder.
func candidateView(b []byte, p int, c *Candidate, strs *[]string) (int, bool) {
	p0 := p
	var ok bool
	if c.ID, p, ok = str1(b, p); !ok {
		return p0, false
	}
	if c.Tags, p, ok = pairs1(b, p); !ok {
		return p0, false
	}
	var k uint64
	if k, p, ok = uv2(b, p); !ok || k > uint64(len(b)-p) {
		return p0, false
	}
	c.Purposes = nil
	if k > 0 {
		ss := *strs
		start := len(ss)
		for range k {
			var s string
			if s, p, ok = str1(b, p); !ok {
				return p0, false
			}
			ss = append(ss, s)
		}
		*strs = ss
		c.Purposes = ss[start:len(ss):len(ss)]
	}
	var u uint64
	if u, p, ok = uv2(b, p); !ok {
		return p0, false
	}
	c.Capacity = zz(u)
	if u, p, ok = uv2(b, p); !ok {
		return p0, false
	}
	c.Load = zz(u)
	if u, p, ok = uv2(b, p); !ok {
		return p0, false
	}
	c.Queue = zz(u)
	if c.State, p, ok = str1(b, p); !ok {
		return p0, false
	}
	return p, true
}
