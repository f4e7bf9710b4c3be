// Package abi is the binary encoding of sluice policy ABI v1: the inputs the host
// passes to a guest's route and throttle exports and the outputs it gets back.
// Host and guest both use this package, so the two sides cannot disagree; it
// imports only the standard library and runs in a wasip1 guest.
//
// The encoding is positional: unsigned varints, zig-zag signed varints, and
// strings as a varint length followed by bytes. wasm/ABI.md is the normative
// description. Decoders never panic and never allocate more than the input's size.
package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"
)

// Version is the ABI version this package encodes.
const Version = 1

// MaxMessage bounds an encoded input or output.
const MaxMessage = 1 << 20

// ErrDecode is wrapped by every decoding failure.
var ErrDecode = errors.New("abi: malformed message")

// Ops, protocols and kinds travel as strings; these are the values the host sends.
const (
	OpPublish = "publish"
	OpPlay    = "play"
	OpProxy   = "proxy" // a stream placed for the HTTP and gRPC calls that name it
)

// RouteInput is what a route policy decides on.
type RouteInput struct {
	StreamID   string      `json:"stream"`
	Op         string      `json:"op"`       // publish, play or proxy
	Protocol   string      `json:"protocol"` // whip, whep, quic
	ClientAddr string      `json:"client,omitempty"`
	Headers    Pairs       `json:"-"` // JSON: see cmd/sluice's recorded decisions
	Purpose    string      `json:"purpose"`
	Placement  string      `json:"placement,omitempty"` // agent carrying the stream now
	Candidates []Candidate `json:"candidates"`

	// CandidatesVersion is for the policy host's callers and never reaches a
	// guest. Non-zero, it promises that Candidates are equal to those of every
	// other input with the same version, so the host need not compare them with
	// what a guest holds. The gateway numbers its agent lists this way.
	CandidatesVersion uint64 `json:"-"`

	agents []string // AgentList's memory, set by RouteDecoder
	elig   uint32   // the flags an eligible candidate has, set by RouteDecoder; 0 when unknown
}

// Eligible reports whether c may take the request: it has an id (an agent
// without one cannot be reached), is serving (Serving) and offers the purpose
// asked for (Offers(in.Purpose)). In a guest it tests flags the SDK worked out
// when c arrived, instead of comparing strings.
func (in *RouteInput) Eligible(c *Candidate) bool {
	// Written to stay within Go's inlining budget (cost 80 of 80), so that a
	// guest's policy makes no call per candidate.
	if f := c.flags & in.elig; int32(f) < 0 { // both have flagDecoded
		return f == in.elig
	}
	return in.eligibleByStrings(c)
}

func (in *RouteInput) eligibleByStrings(c *Candidate) bool {
	return c.ID != "" && c.Serving() && c.Offers(in.Purpose)
}

// AgentList returns an empty list with room for n agents, for the policy to
// answer with in RouteOutput.Agents. In a guest its memory is the SDK's, reused
// from call to call (the output is encoded as soon as the handler returns), so
// a policy that builds its answer in it allocates nothing: in a Go guest,
// allocating the answer costs more than deciding it. The first call per input
// returns that memory; later ones, and calls outside a guest, a new list.
func (in *RouteInput) AgentList(n int) []string {
	if l := in.agents; cap(l) >= n && l != nil {
		in.agents = nil
		return l[:0]
	}
	return make([]string, 0, n)
}

// Candidate is one agent a stream may go to.
type Candidate struct {
	ID       string   `json:"id"`
	Tags     Pairs    `json:"-"`
	Purposes []string `json:"purposes"`
	Capacity int      `json:"capacity"`
	Load     int      `json:"load"`
	Queue    int      `json:"queue"`
	State    string   `json:"state"`

	flags  uint32 // set by RouteDecoder: flagDecoded, flagServing, the purposes it offers
	chunk  int32  // set by RouteDecoder: 1 + the index of the chunk its strings are in
	idHash uint64 // Hash(ID), set by RouteDecoder
}

// IDHash is Hash(c.ID), for consistent-hashing policies. A guest's SDK works
// it out once, when the candidate arrives, not on every decision.
func (c *Candidate) IDHash() uint64 {
	if c.flags&flagDecoded != 0 {
		return c.idHash
	}
	return Hash(c.ID)
}

// Hash is a 64-bit hash of s, the same in every guest and natively: s folded
// in eight bytes at a time (the last eight overlapping the previous ones when
// the length is not a multiple of eight), or byte by byte when it is shorter,
// multiplying by odd constants in between (in the manner of FNV), then mixed
// by MurmurHash3's finaliser. It is fast in a Go guest (one load per eight
// bytes, no call) and not meant to resist an adversary.
func Hash(s string) uint64 {
	x := uint64(0x243f6a8885a308d3)
	if n := len(s); n >= 8 {
		p := unsafe.Pointer(unsafe.StringData(s))
		for i := 0; i+8 < n; i += 8 {
			x = (x ^ *(*uint64)(unsafe.Add(p, i))) * 0x9e3779b97f4a7c15
		}
		x = (x ^ *(*uint64)(unsafe.Add(p, n-8))) * 0x9e3779b97f4a7c15 // little-endian on every Go Wasm and native target we build
	} else {
		for i := range n {
			x = (x ^ uint64(s[i])) * 0x100000001b3
		}
	}
	return Mix((x ^ uint64(len(s))) * 0x9e3779b97f4a7c15)
}

// Mix is MurmurHash3's 64-bit finaliser: every bit of x affects every bit of
// the result. Policies use it to combine hashes (Mix(a ^ b)).
func Mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// A candidate's flags, which a guest's decoder works out once per candidate it
// receives (RouteDecoder) so that RouteInput.Eligible costs a mask test; bits
// 0 to maxInterned-1 are the interned purposes the candidate offers.
const (
	flagDecoded = 1 << 31 // the sign bit: Eligible tests it as int32(flags) < 0
	flagServing = 1 << 30
)

// Serving reports whether the agent takes new work: its state is "serving" (or
// unset), not "draining".
func (c *Candidate) Serving() bool { return c.State == "" || same(c.State, "serving") }

// Offers reports whether the agent serves purpose; every agent serves "".
func (c *Candidate) Offers(purpose string) bool {
	ps := c.Purposes
	if purpose == "" || len(ps) > 0 && same(ps[0], purpose) { // no loop for the usual case
		return true
	}
	for _, p := range ps {
		if same(p, purpose) {
			return true
		}
	}
	return false
}

// same is a == b, answered without a call when both point to the same bytes,
// as a guest's interned states and purposes do (RouteDecoder): comparing
// strings costs a Go guest a call and a byte loop otherwise.
func same(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// RouteOutput is agents in order of preference, or a rejection.
type RouteOutput struct {
	Agents []string   `json:"agents,omitempty"`
	Reject *Rejection `json:"reject,omitempty"`
}

// Rejection refuses a request with an HTTP status and a reason.
type Rejection struct {
	Status int    `json:"status"`
	Reason string `json:"reason"`
}

// ThrottleInput is what a throttle policy decides on.
type ThrottleInput struct {
	Kind     string        `json:"kind"` // publish, play, api
	StreamID string        `json:"stream"`
	Path     string        `json:"path"`
	Protocol string        `json:"protocol"`
	Client   string        `json:"client,omitempty"`
	Pools    []PoolFigures `json:"pools"`
	NowNanos int64         `json:"now"` // Unix time in nanoseconds
}

// PoolFigures are one purpose's pool figures.
type PoolFigures struct {
	Purpose    string `json:"purpose"`
	Concurrent int    `json:"concurrent"`
	Active     int    `json:"active"`
	Queued     int    `json:"queued"`
}

// Action is a throttle decision's kind.
type Action uint8

// Throttle actions.
const (
	Admit Action = iota
	Queue
	Reject
	Redirect
	Origin
)

var actionNames = [...]string{"admit", "queue", "reject", "redirect", "origin"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ThrottleOutput is a throttle decision.
type ThrottleOutput struct {
	Action      Action `json:"action"`
	Status      int    `json:"status,omitempty"`
	Body        []byte `json:"body,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	URL         string `json:"url,omitempty"`
}

// Encoder appends ABI values to a buffer.
type Encoder struct{ B []byte }

func (e *Encoder) uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }
func (e *Encoder) varint(v int64)   { e.B = binary.AppendVarint(e.B, v) }
func (e *Encoder) str(s string)     { e.uvarint(uint64(len(s))); e.B = append(e.B, s...) }
func (e *Encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.B = append(e.B, b...) }
func (e *Encoder) strs(ss []string) {
	// Sized once, and short lengths written as the byte they are: a guest
	// encodes its answer with this, and pays for every call it makes.
	size := binary.MaxVarintLen64
	for _, s := range ss {
		size += binary.MaxVarintLen64 + len(s)
	}
	e.B = slices.Grow(e.B, size)
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		if len(s) < 0x80 {
			e.B = append(append(e.B, byte(len(s))), s...)
		} else {
			e.str(s)
		}
	}
}
func (e *Encoder) pairs(ps Pairs) {
	e.uvarint(uint64(ps.n))
	e.str(ps.enc)
}

// decoder reads ABI values, remembering the first error. Its methods take the
// one-byte varint (the common case: small numbers and strings under 128 bytes)
// without further calls, because in a Go guest every call costs more than the
// byte it reads.
type decoder struct {
	b   []byte
	err error
	// view makes strings point into b instead of copying (see RouteDecoder).
	view bool
	// base, when set, holds a copy of the whole message: strings are cut from it,
	// so a message costs one allocation however many strings it has.
	base string
	off  int // offset of b in base
	// strArena backs the lists of a RouteInput decoded as a view.
	strArena []string
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrDecode, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		v := d.b[0]
		d.b = d.b[1:]
		d.off++
		return uint64(v)
	}
	return d.uvarintSlow()
}

func (d *decoder) uvarintSlow() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.Varint
}

func (d *decoder) int() int {
	v := d.varint()
	if v > 1<<31-1 || v < -(1<<31) {
		d.fail("integer out of range")
		return 0
	}
	return int(v)
}

func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every element takes at least one byte
		d.fail("count larger than the message")
		return 0
	}
	return int(n)
}

func (d *decoder) raw() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	d.off += n
	return b
}

func (d *decoder) str() string {
	if len(d.b) > 0 {
		if n := int(d.b[0]); n < 0x80 && n < len(d.b) {
			b := d.b[1 : 1+n]
			d.b = d.b[1+n:]
			d.off += 1 + n
			return d.mk(b)
		}
	}
	if d.err != nil {
		return ""
	}
	return d.mk(d.raw())
}

// mk makes the string of b, which d just read at d.off-len(b).
func (d *decoder) mk(b []byte) string {
	switch {
	case len(b) == 0:
		return ""
	case d.view:
		return unsafe.String(&b[0], len(b))
	case d.base != "":
		return d.base[d.off-len(b) : d.off]
	}
	return string(b)
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	if d.view {
		start := len(d.strArena)
		for i := 0; i < n && d.err == nil; i++ {
			d.strArena = append(d.strArena, d.str())
		}
		return d.strArena[start:len(d.strArena):len(d.strArena)]
	}
	out := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, d.str())
	}
	return out
}

// pairs reads a map: its count, then its pairs as one length-prefixed string,
// which the reference decoder checks holds exactly count pairs.
func (d *decoder) pairs() Pairs {
	n := d.uvarint()
	enc := d.str()
	if d.err != nil {
		return Pairs{}
	}
	if n > uint64(len(enc)) { // a pair takes at least two bytes
		d.fail("malformed map")
		return Pairs{}
	}
	ps := Pairs{n: int(n), enc: enc}
	if !ps.valid() {
		d.fail("malformed map")
		return Pairs{}
	}
	return ps
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

// AppendRouteInput encodes in, every candidate in full (see RouteEncoder for
// the host's encoding, which refers to candidates the guest already holds).
func AppendRouteInput(b []byte, in *RouteInput) []byte {
	e := Encoder{b}
	e.routeHeader(in)
	e.uvarint(uint64(len(in.Candidates)))
	for i := range in.Candidates {
		e.uvarint(0) // a candidate in full
		e.candidate(&in.Candidates[i])
	}
	return e.B
}

func (e *Encoder) routeHeader(in *RouteInput) {
	e.str(in.StreamID)
	e.str(in.Op)
	e.str(in.Protocol)
	e.str(in.ClientAddr)
	e.pairs(in.Headers)
	e.str(in.Purpose)
	e.str(in.Placement)
}

func (e *Encoder) candidate(c *Candidate) {
	e.str(c.ID)
	e.pairs(c.Tags)
	e.strs(c.Purposes)
	e.varint(int64(c.Capacity))
	e.varint(int64(c.Load))
	e.varint(int64(c.Queue))
	e.str(c.State)
}

// DecodeRouteInput decodes a RouteInput whose candidates are all in full (as
// AppendRouteInput writes them). Its strings are copies: in outlives b.
func DecodeRouteInput(b []byte, in *RouteInput) error {
	d := decoder{b: b}
	d.routeHeader(in)
	in.Candidates = d.candidates(in.Candidates[:0], nil)
	if d.err != nil {
		in.Candidates = in.Candidates[:0]
	}
	return d.end()
}

func (d *decoder) routeHeader(in *RouteInput) {
	in.StreamID = d.str()
	in.Op = d.str()
	in.Protocol = d.str()
	in.ClientAddr = d.str()
	in.Headers = d.pairs()
	in.Purpose = d.str()
	in.Placement = d.str()
}

// candidates reads the candidate list into cs: entries in full, or runs of
// prev, the list the same guest decoded from its previous input (ABI.md).
func (d *decoder) candidates(cs, prev []Candidate) []Candidate {
	n := d.uvarint()
	if n > uint64(len(d.b)+len(prev)) { // an entry takes a byte, a run at most all of prev
		d.fail("count larger than the message")
		return cs
	}
	for uint64(len(cs)) < n && d.err == nil {
		r := d.uvarint()
		if r == 0 {
			cs = append(cs, Candidate{})
			d.candidate(&cs[len(cs)-1])
			continue
		}
		s := d.uvarint()
		if r > n-uint64(len(cs)) || s > uint64(len(prev)) || r > uint64(len(prev))-s {
			d.fail(fmt.Sprintf("run of %d candidates from %d: the previous input had %d", r, s, len(prev)))
			break
		}
		cs = append(cs, prev[s:s+r]...)
	}
	return cs
}

func (d *decoder) candidate(c *Candidate) {
	c.ID = d.str()
	c.Tags = d.pairs()
	c.Purposes = d.strs()
	c.Capacity = d.int()
	c.Load = d.int()
	c.Queue = d.int()
	c.State = d.str()
}

// AppendRouteOutput encodes out.
func AppendRouteOutput(b []byte, out *RouteOutput) []byte {
	e := Encoder{b}
	if out.Reject != nil {
		e.uvarint(1)
		e.varint(int64(out.Reject.Status))
		e.str(out.Reject.Reason)
		return e.B
	}
	e.uvarint(0)
	e.strs(out.Agents)
	return e.B
}

// DecodeRouteOutput decodes a RouteOutput.
func DecodeRouteOutput(b []byte, out *RouteOutput) error {
	d := decoder{b: b, base: string(b)} // one copy; the agents' ids are cut from it
	switch d.uvarint() {
	case 0:
		out.Agents = d.strs()
		out.Reject = nil
	case 1:
		out.Agents = nil
		out.Reject = &Rejection{Status: d.int(), Reason: d.str()}
		if d.err == nil && (out.Reject.Status < 400 || out.Reject.Status > 599) {
			d.fail(fmt.Sprintf("rejection status %d is not 4xx or 5xx", out.Reject.Status))
		}
	case kindAgentsRef:
		d.fail("agents in guest memory, and no memory to read them from")
	default:
		d.fail("unknown route output kind")
	}
	return d.end()
}

// kindAgentsRef is the route output whose agents stay in the guest's memory.
const kindAgentsRef = 2

// AppendRouteAgentsRef encodes a route answer whose n agent ids stay in the
// guest's memory: at addr, n × (u64 address, u64 length) little-endian, which is
// how a Go []string lies in Wasm memory. A Go guest answers without copying a
// byte; the host reads the ids straight from guest memory.
func AppendRouteAgentsRef(b []byte, addr uint32, n int) []byte {
	b = binary.AppendUvarint(append(b, kindAgentsRef), uint64(n))
	return binary.LittleEndian.AppendUint32(b, addr)
}

// DecodeRouteOutputFrom decodes a route output whose agents may be in mem, the
// guest's memory. The ids, together, may take at most max bytes.
func DecodeRouteOutputFrom(b, mem []byte, max int, out *RouteOutput) error {
	if len(b) == 0 || b[0] != kindAgentsRef {
		return DecodeRouteOutput(b, out)
	}
	d := decoder{b: b[1:]}
	n := d.uvarint()
	if d.err != nil || len(d.b) != 4 {
		return fmt.Errorf("%w: agents in guest memory: want a count and a 4-byte address", ErrDecode)
	}
	addr := uint64(binary.LittleEndian.Uint32(d.b))
	if n == 0 || n > uint64(max)/16 {
		return fmt.Errorf("%w: %d agents in guest memory", ErrDecode, n)
	}
	if addr+16*n > uint64(len(mem)) {
		return fmt.Errorf("%w: the agent list at %d+%d is outside guest memory", ErrDecode, addr, n*16)
	}
	list := mem[addr : addr+16*n]
	size := 0
	for i := range int(n) {
		p, l := binary.LittleEndian.Uint64(list[16*i:]), binary.LittleEndian.Uint64(list[16*i+8:])
		if l > uint64(max-size) {
			return fmt.Errorf("%w: agent %d: %d bytes, over %d bytes in all", ErrDecode, i, l, max)
		}
		if p > uint64(len(mem)) || l > uint64(len(mem))-p {
			return fmt.Errorf("%w: agent %d at %d+%d is outside guest memory", ErrDecode, i, p, l)
		}
		size += int(l)
	}
	ids := make([]byte, 0, size) // one copy; the ids are cut from it
	for i := range int(n) {
		p, l := binary.LittleEndian.Uint64(list[16*i:]), binary.LittleEndian.Uint64(list[16*i+8:])
		ids = append(ids, mem[p:p+l]...)
	}
	all := unsafe.String(unsafe.SliceData(ids), len(ids))
	agents := make([]string, n)
	off := 0
	for i := range agents {
		l := int(binary.LittleEndian.Uint64(list[16*i+8:]))
		agents[i], off = all[off:off+l], off+l
	}
	out.Agents, out.Reject = agents, nil
	return nil
}

// AppendThrottleInput encodes in.
func AppendThrottleInput(b []byte, in *ThrottleInput) []byte {
	e := Encoder{b}
	e.str(in.Kind)
	e.str(in.StreamID)
	e.str(in.Path)
	e.str(in.Protocol)
	e.str(in.Client)
	e.uvarint(uint64(len(in.Pools)))
	for _, p := range in.Pools {
		e.str(p.Purpose)
		e.varint(int64(p.Concurrent))
		e.varint(int64(p.Active))
		e.varint(int64(p.Queued))
	}
	e.varint(in.NowNanos)
	return e.B
}

// DecodeThrottleInput decodes a ThrottleInput.
func DecodeThrottleInput(b []byte, in *ThrottleInput) error {
	in.Pools = []PoolFigures{} // the caller's memory is not reused
	return decodeThrottleInput(&decoder{b: b}, in)
}

// DecodeThrottleInputView decodes a ThrottleInput whose strings point into b
// and whose pools reuse in.Pools' memory: what a guest does with an input
// that is read only during the call, so that deciding allocates nothing.
func DecodeThrottleInputView(b []byte, in *ThrottleInput) error {
	return decodeThrottleInput(&decoder{b: b, view: true}, in)
}

func decodeThrottleInput(d *decoder, in *ThrottleInput) error {
	in.Kind = d.str()
	in.StreamID = d.str()
	in.Path = d.str()
	in.Protocol = d.str()
	in.Client = d.str()
	n := d.count()
	in.Pools = slices.Grow(in.Pools[:0], n)
	for i := 0; i < n && d.err == nil; i++ {
		in.Pools = append(in.Pools, PoolFigures{Purpose: d.str(), Concurrent: d.int(), Active: d.int(), Queued: d.int()})
	}
	in.NowNanos = d.varint()
	return d.end()
}

// AppendThrottleOutput encodes out.
func AppendThrottleOutput(b []byte, out *ThrottleOutput) []byte {
	e := Encoder{b}
	e.uvarint(uint64(out.Action))
	e.varint(int64(out.Status))
	e.bytes(out.Body)
	e.str(out.ContentType)
	e.str(out.URL)
	return e.B
}

// DecodeThrottleOutput decodes a ThrottleOutput.
func DecodeThrottleOutput(b []byte, out *ThrottleOutput) error {
	d := decoder{b: b}
	a := d.uvarint()
	if a > uint64(Origin) {
		d.fail(fmt.Sprintf("unknown throttle action %d", a))
	}
	out.Action = Action(a)
	out.Status = d.int()
	out.Body = append([]byte(nil), d.raw()...)
	out.ContentType = d.str()
	out.URL = d.str()
	if d.err == nil {
		switch {
		case out.Action == Reject && (out.Status < 400 || out.Status > 599):
			d.fail(fmt.Sprintf("reject with status %d, want 4xx or 5xx", out.Status))
		case out.Action == Redirect && out.URL == "":
			d.fail("redirect without a URL")
		}
	}
	return d.end()
}
