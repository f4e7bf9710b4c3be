// Package preempt rewrites a WebAssembly module so that code running in it can be
// stopped from outside, cheaply. It adds two mutable i32 globals — a poll budget,
// and a stop flag exported as ExportName — and makes every function entry and
// every loop header poll:
//
//	global.get $budget
//	i32.const 1
//	i32.sub
//	global.set $budget
//	global.get $budget
//	i32.const 0
//	i32.le_s
//	if                  ;; every Interval polls
//	  i32.const Interval
//	  global.set $budget
//	  i32.const 0
//	  memory.grow       ;; leaves compiled code for the host
//	  drop
//	  global.get $stop
//	  if
//	    unreachable
//	  end
//	end
//
// A host that sets the stop flag while a call runs makes that call trap within
// Interval polls. The poll costs a counter in compiled code, where wazero's
// WithCloseOnContextDone leaves compiled code on every back-edge (see
// ../../RATIONALE.md for the measurements). The memory.grow of nothing matters
// as much as the flag: wazero runs it in Go, which gives Go's scheduler a point
// to preempt the goroutine. Without it, calls that loop on every processor would
// hold every P, and the host's watchdog could never run to stop them.
//
// Since it decodes every instruction anyway, it also takes most of their cost
// out of the dispatch loops Go's Wasm backend compiles every function into:
// jumps.go makes their forward jumps direct, keeping every $pc reaching the
// code it reached before, and every cycle polling.
//
// Rewrite decodes every instruction (MVP, sign extension, saturating conversions,
// bulk memory, reference types, multi-value, SIMD, threads and tail calls) to
// find the loops. It refuses, with an error naming the place, a module it cannot
// decode, a module that already exports ExportName, and code that names a global
// index the module does not define (such code would otherwise become valid and
// could reset the new global).
package preempt

import (
	"errors"
	"fmt"
)

// ExportName is the export under which the stop global is reachable.
const ExportName = "sluice_preempt"

// Interval is the number of polls between two looks at the stop flag.
const Interval = 1 << 14

// ErrMalformed is wrapped by every refusal.
var ErrMalformed = errors.New("preempt: cannot instrument module")

// Section ids of the binary format.
const (
	secCustom  = 0
	secImport  = 2
	secMemory  = 5
	secGlobal  = 6
	secExport  = 7
	secCode    = 10
	kindGlobal = 3
)

// sectionRank orders the known sections as the binary format requires; a new
// global or export section is inserted before the first section ranked after it.
var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// Rewrite returns an instrumented copy of the module b.
func Rewrite(b []byte) ([]byte, error) {
	out, _, err := rewrite(b)
	return out, err
}

// stats counts what the rewrite did beyond the polls, for tests.
type stats struct {
	direct int // jumps made direct (jumps.go)
}

// rewrite is Rewrite, also counting the jumps it made direct.
func rewrite(b []byte) (_ []byte, st stats, _ error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" || b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, st, fmt.Errorf("%w: not a WebAssembly 1.0 binary", ErrMalformed)
	}
	r := reader{b: b, p: 8}
	var secs []section
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, st, fmt.Errorf("%w: section %d: %v", ErrMalformed, id, r.err)
		}
		secs = append(secs, section{id, body})
	}

	importedGlobals, definedGlobals := 0, 0
	hasMemory := false
	for _, s := range secs {
		var err error
		switch s.id {
		case secImport:
			var memories int
			importedGlobals, memories, err = countImports(s.body)
			hasMemory = hasMemory || memories > 0
		case secMemory:
			var n int
			n, err = countVec(s.body)
			hasMemory = hasMemory || n > 0
		case secGlobal:
			definedGlobals, err = countVec(s.body)
		case secExport:
			err = checkExports(s.body)
		}
		if err != nil {
			return nil, st, err
		}
	}
	if !hasMemory {
		return nil, st, fmt.Errorf("%w: the module has no memory", ErrMalformed)
	}
	budget := uint32(importedGlobals + definedGlobals)
	stop := budget + 1

	newGlobal := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b} // two × (i32, mutable, i32.const 0, end)
	newExport := appendName(nil, ExportName)
	newExport = append(newExport, kindGlobal)
	newExport = appendU32(newExport, stop)

	var out []section
	haveGlobal, haveExport := false, false
	insertMissing := func(rank int) {
		if !haveGlobal && rank > sectionRank[secGlobal] {
			out = append(out, section{secGlobal, append(appendU32(nil, 2), newGlobal...)})
			haveGlobal = true
		}
		if !haveExport && rank > sectionRank[secExport] {
			out = append(out, section{secExport, append(appendU32(nil, 1), newExport...)})
			haveExport = true
		}
	}
	for _, s := range secs {
		if s.id != secCustom {
			insertMissing(sectionRank[s.id])
		}
		switch s.id {
		case secCustom:
			if isDebugSection(s.body) {
				continue // DWARF names code offsets, which the rewrite moves
			}
		case secGlobal:
			s.body = appendToVec(s.body, definedGlobals, 2, newGlobal)
			haveGlobal = true
		case secExport:
			n, _ := countVec(s.body)
			s.body = appendToVec(s.body, n, 1, newExport)
			haveExport = true
		case secCode:
			body, n, err := rewriteCode(s.body, budget, stop)
			if err != nil {
				return nil, st, err
			}
			s.body, st = body, n
		}
		out = append(out, s)
	}
	insertMissing(1 << 30)

	size := 8
	for _, s := range out {
		size += 1 + 5 + len(s.body)
	}
	res := append(make([]byte, 0, size), b[:8]...)
	for _, s := range out {
		res = append(res, s.id)
		res = appendU32(res, uint32(len(s.body)))
		res = append(res, s.body...)
	}
	return res, st, nil
}

func isDebugSection(body []byte) bool {
	r := reader{b: body}
	name := r.name()
	return r.err == nil && (len(name) >= 7 && name[:7] == ".debug_" || name == "sourceMappingURL" || name == "external_debug_info")
}

func countVec(body []byte) (int, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, r.err)
	}
	return int(n), nil
}

// appendToVec rewrites a vector section body with k more elements.
func appendToVec(body []byte, n, k int, elems []byte) []byte {
	r := reader{b: body}
	r.u32()
	out := appendU32(nil, uint32(n+k))
	out = append(out, body[r.p:]...)
	return append(out, elems...)
}

// countImports counts the imported globals and memories.
func countImports(body []byte) (globals, memories int, err error) {
	r := reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0: // function: type index
			r.u32()
		case 1: // table: reftype, limits
			r.byte()
			r.limits()
		case 2: // memory: limits
			r.limits()
			memories++
		case 3: // global: valtype, mutability
			r.byte()
			r.byte()
			globals++
		default:
			r.fail(fmt.Sprintf("import %d has unknown kind %d", i, kind))
		}
	}
	if r.err == nil && r.p != len(r.b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return 0, 0, fmt.Errorf("%w: import section: %v", ErrMalformed, r.err)
	}
	return globals, memories, nil
}

func checkExports(body []byte) error {
	r := reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if r.name() == ExportName {
			return fmt.Errorf("%w: the module exports %s, a name the host reserves", ErrMalformed, ExportName)
		}
		r.byte()
		r.u32()
	}
	if r.err == nil && r.p != len(r.b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("%w: export section: %v", ErrMalformed, r.err)
	}
	return nil
}

// rewriteCode instruments every function body of a code section.
func rewriteCode(body []byte, budget, stop uint32) (_ []byte, st stats, _ error) {
	check := appendU32([]byte{0x23}, budget)            // global.get $budget
	check = append(check, 0x41, 0x01, 0x6b)             // i32.const 1, i32.sub
	check = appendU32(append(check, 0x24), budget)      // global.set $budget
	check = appendU32(append(check, 0x23), budget)      // global.get $budget
	check = append(check, 0x41, 0x00, 0x4c, 0x04, 0x40) // i32.const 0, i32.le_s, if
	check = appendS32(append(check, 0x41), Interval)    // i32.const Interval
	check = appendU32(append(check, 0x24), budget)      // global.set $budget
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1a) // i32.const 0, memory.grow 0, drop
	check = appendU32(append(check, 0x23), stop)        // global.get $stop
	check = append(check, 0x04, 0x40, 0x00, 0x0b, 0x0b) // if unreachable end, end

	r := reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+len(body)/8), n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, st, fmt.Errorf("%w: function %d: %v", ErrMalformed, i, r.err)
		}
		var err error
		var k stats
		fn, k, err = rewriteFunc(fn[:0], code, check, budget)
		if err != nil {
			return nil, st, fmt.Errorf("%w: function %d: %v", ErrMalformed, i, err)
		}
		st.direct += k.direct
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if !r.done() {
		return nil, st, fmt.Errorf("%w: code section has trailing bytes", ErrMalformed)
	}
	return out, st, nil
}

// rewriteFunc copies one function body, adding check after its locals and
// after every loop's block type and making the forward jumps of its dispatch
// loops direct (jumps.go).
func rewriteFunc(out, code, check []byte, firstNew uint32) (_ []byte, st stats, _ error) {
	r := reader{b: code}
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, st, fmt.Errorf("locals: %v", r.err)
	}
	out = append(out, code[:r.p]...)
	out = append(out, check...)
	from := r.p
	// The control stack: what each open block, loop or if is to dispatch.
	type frame struct {
		loop  *dispatch // the dispatch loop this frame is
		owner *dispatch // the dispatch loop whose block this frame is
	}
	stack := []frame{{}}  // the function body
	var loops []*dispatch // the dispatch loops open, innermost last
	var pending *dispatch // its blocks are the next ones opened
	pendingBlocks := 0
	for !r.done() && r.err == nil {
		at := r.p
		op := r.byte()
		switch {
		case op == 0x03: // loop
			r.blockType()
			out = append(out, code[from:r.p]...)
			out = append(out, check...)
			from = r.p
			f := frame{}
			if code[r.p-1] == 0x40 {
				if d := findDispatch(code, r.p, len(stack)); d != nil {
					f.loop, pending, pendingBlocks = d, d, d.blocks
					loops = append(loops, d)
				}
			}
			stack = append(stack, f)
		case op == 0x02 || op == 0x04: // block, if
			r.blockType()
			f := frame{}
			if op == 0x02 && pendingBlocks > 0 {
				f.owner = pending
				pendingBlocks--
			}
			stack = append(stack, f)
		case op == 0x0b: // end
			if len(stack) > 0 {
				if stack[len(stack)-1].loop != nil {
					loops = loops[:len(loops)-1]
				}
				stack = stack[:len(stack)-1]
			}
		case op == 0x41: // i32.const: perhaps a jump
			if len(loops) > 0 {
				d := loops[len(loops)-1]
				depth := len(stack) - 1
				open := func(t int) bool { return t < len(stack) && stack[t].owner == d }
				if nd, immAt, immEnd, ok := directJump(code, at, d, depth, open); ok {
					out = append(out, code[from:immAt]...)
					out = appendU32(out, nd)
					from, r.p = immEnd, immEnd
					st.direct++
					continue
				}
			}
			r.leb(5)
		case op == 0x23 || op == 0x24: // global.get, global.set
			if idx := r.u32(); r.err == nil && idx >= firstNew {
				return nil, st, fmt.Errorf("instruction at %d names global %d, which the module does not define", r.p, idx)
			}
		default:
			skipImmediates(&r, op)
		}
	}
	if r.err != nil {
		return nil, st, r.err
	}
	return append(out, code[from:]...), st, nil
}

// skipImmediates moves r past the immediates of opcode op.
func skipImmediates(r *reader, op byte) {
	switch {
	case op == 0x02 || op == 0x04: // block, if
		r.blockType()
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || // br, br_if, call, return_call
		op >= 0x20 && op <= 0x22 || op == 0x25 || op == 0x26 || op == 0xd2: // locals, table.get/set, ref.func
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select with types
		n := r.u32()
		r.bytes(int(n))
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41 || op == 0x42: // i32.const, i64.const
		r.leb(10)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null
		r.byte()
	case op == 0xfc:
		skipFC(r, r.u32())
	case op == 0xfd:
		skipFD(r, r.u32())
	case op == 0xfe:
		if sub := r.u32(); sub == 0x03 { // atomic.fence
			r.byte()
		} else {
			r.memarg()
		}
	case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, // no immediates
		op >= 0x45 && op <= 0xc4, op == 0xd1:
	default:
		r.fail(fmt.Sprintf("unknown opcode 0x%02x at %d", op, r.p-1))
	}
}

func skipFC(r *reader, sub uint32) {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	default:
		r.fail(fmt.Sprintf("unknown opcode 0xfc %d at %d", sub, r.p))
	}
}

func skipFD(r *reader, sub uint32) {
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // v128 loads and stores
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		r.memarg()
		r.byte()
	case sub <= 0xff: // every other SIMD instruction has no immediate
	default:
		r.fail(fmt.Sprintf("unknown opcode 0xfd %d at %d", sub, r.p))
	}
}

// reader decodes the binary format, remembering the first error.
type reader struct {
	b   []byte
	p   int
	err error
}

var errShort = errors.New("unexpected end")

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = errors.New(msg)
	}
}

func (r *reader) done() bool { return r.p >= len(r.b) || r.err != nil }

func (r *reader) byte() byte {
	if r.p >= len(r.b) {
		if r.err == nil {
			r.err = errShort
		}
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b)-r.p {
		if r.err == nil {
			r.err = errShort
		}
		r.p = len(r.b)
		return nil
	}
	s := r.b[r.p : r.p+n]
	r.p += n
	return s
}

// leb skips a LEB128 number of at most max bytes.
func (r *reader) leb(max int) {
	for i := 0; i < max; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail("LEB128 number too long")
}

func (r *reader) u32() uint32 {
	var x uint32
	for s := 0; s < 35; s += 7 {
		c := r.byte()
		x |= uint32(c&0x7f) << s
		if c&0x80 == 0 {
			return x
		}
	}
	r.fail("u32 too long")
	return 0
}

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}

func (r *reader) memarg() {
	r.u32() // alignment
	r.u32() // offset
}

// blockType skips a block type: empty, a value type, or a type index (s33).
func (r *reader) blockType() {
	if r.p < len(r.b) {
		switch r.b[r.p] {
		case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
			r.p++
			return
		}
	}
	r.leb(5)
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
