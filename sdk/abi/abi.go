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
)

// RouteInput is what a route policy decides on.
type RouteInput struct {
	StreamID   string            `json:"stream"`
	Op         string            `json:"op"`       // publish or play
	Protocol   string            `json:"protocol"` // whip, whep, quic
	ClientAddr string            `json:"client,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Purpose    string            `json:"purpose"`
	Placement  string            `json:"placement,omitempty"` // agent carrying the stream now
	Candidates []Candidate       `json:"candidates"`
}

// Candidate is one agent a stream may go to.
type Candidate struct {
	ID       string            `json:"id"`
	Tags     map[string]string `json:"tags,omitempty"`
	Purposes []string          `json:"purposes"`
	Capacity int               `json:"capacity"`
	Load     int               `json:"load"`
	Queue    int               `json:"queue"`
	State    string            `json:"state"`
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
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}
func (e *Encoder) smap(m map[string]string) {
	e.uvarint(uint64(len(m)))
	for k, v := range m { // order does not matter: decoding builds a map
		e.str(k)
		e.str(v)
	}
}

// decoder reads ABI values, remembering the first error.
type decoder struct {
	b   []byte
	err error
	// view makes strings point into b instead of copying (see DecodeRouteInputView).
	view bool
	// arena backs the candidates' purpose lists when reusing a RouteInput.
	arena []string
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrDecode, what)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
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
	return b
}

func (d *decoder) str() string {
	b := d.raw()
	if d.view && len(b) > 0 {
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	if d.view {
		start := len(d.arena)
		for i := 0; i < n && d.err == nil; i++ {
			d.arena = append(d.arena, d.str())
		}
		return d.arena[start:len(d.arena):len(d.arena)]
	}
	out := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, d.str())
	}
	return out
}

func (d *decoder) smap() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

// AppendRouteInput encodes in.
func AppendRouteInput(b []byte, in *RouteInput) []byte {
	e := Encoder{b}
	e.str(in.StreamID)
	e.str(in.Op)
	e.str(in.Protocol)
	e.str(in.ClientAddr)
	e.smap(in.Headers)
	e.str(in.Purpose)
	e.str(in.Placement)
	e.uvarint(uint64(len(in.Candidates)))
	for i := range in.Candidates {
		c := &in.Candidates[i]
		e.str(c.ID)
		e.smap(c.Tags)
		e.strs(c.Purposes)
		e.varint(int64(c.Capacity))
		e.varint(int64(c.Load))
		e.varint(int64(c.Queue))
		e.str(c.State)
	}
	return e.B
}

// DecodeRouteInput decodes a RouteInput.
func DecodeRouteInput(b []byte, in *RouteInput) error {
	d := decoder{b: b}
	return d.routeInput(in)
}

// RouteScratch is reusable memory for DecodeRouteInputView.
type RouteScratch struct{ arena []string }

// DecodeRouteInputView decodes without copying: the strings of in point into b,
// and in's slices and sc are reused from the previous call. It is for guests,
// where b is the host's input buffer and allocation is what a call costs most;
// in is valid only as long as b is unchanged.
func DecodeRouteInputView(b []byte, in *RouteInput, sc *RouteScratch) error {
	d := decoder{b: b, view: true, arena: sc.arena[:0]}
	err := d.routeInput(in)
	sc.arena = d.arena
	return err
}

func (d *decoder) routeInput(in *RouteInput) error {
	in.StreamID = d.str()
	in.Op = d.str()
	in.Protocol = d.str()
	in.ClientAddr = d.str()
	in.Headers = d.smap()
	in.Purpose = d.str()
	in.Placement = d.str()
	n := d.count()
	if cap(in.Candidates) >= n {
		in.Candidates = in.Candidates[:0] // reuse: decoding into the same value allocates less
	} else {
		in.Candidates = make([]Candidate, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var c Candidate
		c.ID = d.str()
		c.Tags = d.smap()
		c.Purposes = d.strs()
		c.Capacity = d.int()
		c.Load = d.int()
		c.Queue = d.int()
		c.State = d.str()
		in.Candidates = append(in.Candidates, c)
	}
	return d.end()
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
	d := decoder{b: b}
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
	default:
		d.fail("unknown route output kind")
	}
	return d.end()
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
	d := decoder{b: b}
	in.Kind = d.str()
	in.StreamID = d.str()
	in.Path = d.str()
	in.Protocol = d.str()
	in.Client = d.str()
	n := d.count()
	in.Pools = make([]PoolFigures, 0, n)
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
