package preempt

import (
	"errors"
	"slices"
)

// Structured loops for Go's dispatch loops.
//
// jumps.go makes a dispatch loop's forward jumps direct; its backward jumps —
// every iteration of every loop in the source — still go back to the loop
// header and its br_table. That costs a Go guest about 10 ns an iteration: the
// indirect jump, and the register allocator, which has to meet every basic
// block of the function at the dispatcher and keeps little in registers
// across it. loopify gives each loop of the source a Wasm loop of its own.
//
// The code of each basic block (a segment) stays where it is; what changes is
// the nesting of blocks between segments. For a backward jump from segment j
// to segment k, segments k to j become a region: a `loop` that opens where
// segment k begins and ends where segment j ends, with the blocks of its
// segments opened inside it instead of at the top of the function, and a
// dispatcher of its own:
//
//	loop                      ;; the region, polled like every loop
//	  block … block           ;; one per unit: a segment, or a region inside
//	    local.get $pc
//	    i32.const N           ;; the $pc of the back-edges to k
//	    i32.eq
//	    br_if 0               ;; the common case: the next iteration
//	    local.get $pc
//	    i32.const PCMIN
//	    i32.sub
//	    br_table …            ;; entered otherwise: to the unit holding $pc
//	  end
//	  segment k …
//	end
//
// A back-edge branches to its region's loop with $pc set as before, and the
// first test sends it to segment k; a forward jump branches to the block of
// the unit that holds its target, in the innermost region holding both ends
// of the jump (a region's own dispatcher takes a jump into its middle); the
// function's dispatcher sends each $pc to the unit that holds its segment,
// whence the regions' dispatchers send it on, a $pc past the function's table
// included (to the segment its default names). Falling into a region from the
// segment before it, the code sets $pc to the back-edges' first, since $pc
// may hold anything there (Go uses its local for an indirect call's target).
// So every $pc reaches the code it reached before, as the dispatcher is also
// how Go resumes a function after a goroutine switch. Of two loops that
// overlap without nesting (goto can make them), the second is no region: its
// back-edge goes through the dispatcher of the innermost region holding its
// target, the function's at worst.
//
// Like jumps.go, nothing here is specific to Go beyond the shape of a loop of
// empty blocks, local.get and br_table. A function whose code branches to the
// dispatcher's blocks other than through br_table, that the pass cannot read,
// or whose regions' tables would outgrow it severalfold (nested regions each
// spanning a block with the function's lowest and highest $pc), is left as it
// was.

// errShape is loopify declining a function it cannot restructure safely.
var errShape = errors.New("not a dispatch loop it can restructure")

// insn is one instruction of a function body.
type insn struct {
	at, end int32 // its bytes, code[at:end]
	frame   int32 // block, loop, if: the frame it opens; end: the frame it closes
	t0, tn  int32 // br, br_if, br_table: the frames it branches to are targets[t0:t0+tn] (br_table's default last)
	op      byte
}

// loopifier is loopify's memory, reused from function to function: a module
// has thousands.
type loopifier struct {
	ins     []insn
	targets []int
	stack   []int
	seg     []int // per instruction: its segment, or -1
	segOf   []int // per frame: the segment its end begins, or -1
	jump    []int // per instruction: the segment a jump there goes to, or -1
	back    []int // per segment: the last segment jumping back to it, or -1
	backPC  []int32
	pos     []int
	// shape's per-segment slices
	segStart, regionAt, inner []int
	pcLo, pcHi                []int32
}

func (lf *loopifier) targetsOf(in *insn) []int { return lf.targets[in.t0 : in.t0+in.tn] }

// fill returns s with n elements, each v, reusing its memory.
func fill[T int | int32](s []T, n int, v T) []T {
	s = slices.Grow(s[:0], n)[:n]
	for i := range s {
		s[i] = v
	}
	return s
}

// region is a loop loopify makes, or (the first) the function's dispatch loop.
type region struct {
	start, end int   // its segments
	pc         int32 // $pc of the back-edges to start
	parent     int   // the enclosing region
	units      []int // the first segment of each unit: a segment, or a region inside
	lo, hi     int32 // the lowest and highest $pc sent to its blocks
	loopFrame  int   // the loop's frame
	unitFrame  int   // the frame of unit 0; unit i's is unitFrame+i
}

func (r *region) unit(seg int) int {
	i, found := slices.BinarySearch(r.units, seg)
	if !found {
		i--
	}
	return i
}

// loopify returns code, a function body after its locals, with the loops of
// its dispatch loop structured, and how many loops it made and jumps it made
// direct; or code itself and nothing when the body has no dispatch loop with
// a backward jump, or the pass declines it.
func (lf *loopifier) loopify(code []byte) ([]byte, stats) {
	frames, err := lf.parse(code)
	if err != nil {
		return code, stats{}
	}
	out, st, err := lf.restructure(code, frames)
	if err != nil {
		return code, stats{}
	}
	return out, st
}

// parse decodes a function body into lf.ins, with the frame each instruction
// opens, closes or branches to, and returns the number of frames. Frame 0 is
// the body itself.
func (lf *loopifier) parse(code []byte) (int, error) {
	if len(code) >= 1<<31 {
		return 0, errShape
	}
	r := reader{b: code}
	frames := 1
	stack := append(lf.stack[:0], 0)
	ins, targets := lf.ins[:0], lf.targets[:0]
	defer func() { lf.ins, lf.targets, lf.stack = ins, targets, stack }()
	for !r.done() {
		in := insn{at: int32(r.p), frame: -1}
		in.op = r.byte()
		switch in.op {
		case 0x02, 0x03, 0x04: // block, loop, if
			r.blockType()
			in.frame = int32(frames)
			frames++
			stack = append(stack, int(in.frame))
		case 0x0b: // end
			if len(stack) == 0 {
				return 0, errShape
			}
			in.frame = int32(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
		case 0x0c, 0x0d, 0x0e: // br, br_if, br_table
			n := uint32(0)
			if in.op == 0x0e {
				if n = r.u32(); uint64(n) >= uint64(len(code)) {
					return 0, errShape
				}
			}
			in.t0 = int32(len(targets))
			for i := uint32(0); i <= n && r.err == nil; i++ {
				d := r.u32()
				if uint64(d) >= uint64(len(stack)) {
					return 0, errShape
				}
				targets = append(targets, stack[len(stack)-1-int(d)])
			}
			in.tn = int32(len(targets)) - in.t0
		case 0x23, 0x24: // global.get, global.set
			r.u32()
		default:
			skipImmediates(&r, in.op)
		}
		in.end = int32(r.p)
		ins = append(ins, in)
	}
	if r.err != nil || len(stack) != 0 {
		return 0, errShape
	}
	return frames, nil
}

// shape is what restructure learns of a function's dispatch loop.
type shape struct {
	code       []byte
	ins        []insn
	d          *dispatch
	di         int     // the loop's instruction
	table      int     // the dispatcher's br_table's
	dEnd       int     // the loop's end's
	m          int     // segments
	loopD      int     // the loop's frame
	frames     int     // frames in all, the ones restructure adds included
	segStart   []int   // per segment: the instruction index of the end it begins at
	seg        []int   // per instruction: its segment, or -1
	jump       []int   // per instruction: the segment a jump there goes to, or -1
	pcLo, pcHi []int32 // per segment: the lowest and highest $pc sent there, or -1
	regions    []region
	regionAt   []int // per segment: the region it is the first of, or 0
	inner      []int // per segment: the innermost region holding it
}

func (lf *loopifier) restructure(code []byte, frames int) ([]byte, stats, error) {
	f := &shape{code: code, ins: lf.ins, frames: frames}
	if err := lf.segments(f); err != nil {
		return nil, stats{}, err
	}
	lf.segStart = f.segStart
	back, backPC, err := lf.jumps(f)
	if err != nil {
		return nil, stats{}, err
	}
	lf.regionAt, lf.inner = fill(lf.regionAt, f.m, 0), fill(lf.inner, f.m, 0)
	f.regionAt, f.inner = lf.regionAt, lf.inner
	if err := f.nest(back, backPC); err != nil {
		return nil, stats{}, err
	}
	return lf.emit(f)
}

// segments finds the dispatch loop — loop, m empty blocks, local.get $pc,
// br_table — and the segment of every instruction in it.
func (lf *loopifier) segments(f *shape) error {
	ins := f.ins
	f.di = -1
	for i, in := range ins {
		if in.op == 0x03 && f.code[in.end-1] == 0x40 {
			if f.d = findDispatch(f.code, int(in.end), 0); f.d != nil {
				f.di = i
				break
			}
		}
	}
	if f.d == nil || f.di+f.d.blocks+2 >= len(ins) {
		return errShape
	}
	f.m = f.d.blocks
	f.loopD = int(ins[f.di].frame)
	f.table = f.di + f.m + 2
	// Segment s begins at the end of the block br_table's label s names.
	lf.segOf = fill(lf.segOf, f.frames, -1)
	segOf := lf.segOf
	for l := 0; l < f.m; l++ {
		segOf[ins[f.di+f.m-l].frame] = l // the innermost block is label 0
	}
	f.segStart = lf.segStart[:0]
	lf.seg = fill(lf.seg, len(ins), -1)
	f.seg = lf.seg
	f.dEnd = -1
	cur := -1
	for i := f.table + 1; i < len(ins); i++ {
		in := &ins[i]
		if f.dEnd < 0 {
			if in.op == 0x0b {
				if s := segOf[in.frame]; s >= 0 {
					if s != len(f.segStart) {
						return errShape
					}
					f.segStart = append(f.segStart, i)
					cur = s
				} else if int(in.frame) == f.loopD {
					f.dEnd = i
					continue
				}
			}
			f.seg[i] = cur
		}
		for _, t := range lf.targetsOf(in) { // only the dispatcher branches to its blocks
			if segOf[t] >= 0 {
				return errShape
			}
		}
	}
	if len(f.segStart) != f.m || f.dEnd < 0 {
		return errShape
	}
	return nil
}

// pcSeg is the segment the dispatcher sends $pc n to (label l < m begins
// segment l), or m: the loop itself.
func (f *shape) pcSeg(n int32) int {
	l := f.d.labels[len(f.d.labels)-1]
	if n >= 0 && int64(n) < int64(len(f.d.labels)-1) {
		l = f.d.labels[n]
	}
	return int(l)
}

// jumps finds the jumps — i32.const N, local.set $pc, br to the loop — and
// returns, per segment, the last segment jumping back to it (or -1) and the
// $pc of the first such jump; and the $pcs sent to each segment.
func (lf *loopifier) jumps(f *shape) (back []int, backPC []int32, _ error) {
	ins := f.ins
	lf.jump = fill(lf.jump, len(ins), -1)
	lf.back = fill(lf.back, f.m, -1)
	lf.backPC = fill(lf.backPC, f.m, -1)
	f.jump, back, backPC = lf.jump, lf.back, lf.backPC
	backs := 0
	for i := f.di + 1; i+2 < f.dEnd; i++ {
		if ins[i].op != 0x41 || ins[i+1].op != 0x21 || ins[i+2].op != 0x0c || lf.targets[ins[i+2].t0] != f.loopD || f.seg[i+2] < 0 {
			continue
		}
		cr := reader{b: f.code, p: int(ins[i].at) + 1}
		n := cr.s32()
		lr := reader{b: f.code, p: int(ins[i+1].at) + 1}
		if lr.u32() != f.d.pc || cr.err != nil || lr.err != nil {
			continue
		}
		t, s := f.pcSeg(n), f.seg[i+2]
		if t >= f.m {
			continue
		}
		f.jump[i+2] = t
		if t <= s {
			if back[t] < 0 {
				backPC[t] = n
				backs++
			}
			back[t] = max(back[t], s)
		}
	}
	if backs == 0 {
		return nil, nil, errShape
	}
	lf.pcLo, lf.pcHi = fill(lf.pcLo, f.m, -1), fill(lf.pcHi, f.m, -1)
	f.pcLo, f.pcHi = lf.pcLo, lf.pcHi
	for n := range len(f.d.labels) - 1 {
		if s := f.pcSeg(int32(n)); s < f.m {
			if f.pcLo[s] < 0 {
				f.pcLo[s] = int32(n)
			}
			f.pcHi[s] = int32(n)
		}
	}
	return back, backPC, nil
}

// nest makes the regions, nested (one that would cross the region it starts
// in is dropped), their units and frames, and the innermost region of every
// segment.
func (f *shape) nest(back []int, backPC []int32) error {
	f.regions = []region{{start: 0, end: f.m - 1, parent: -1, loopFrame: f.loopD}}
	open := []int{0}
	for k := range f.m {
		j := back[k]
		if j < 0 {
			continue
		}
		for f.regions[open[len(open)-1]].end < k {
			open = open[:len(open)-1]
		}
		if f.regions[open[len(open)-1]].end < j {
			continue // it crosses the region it starts in
		}
		f.regions = append(f.regions, region{start: k, end: j, pc: backPC[k], parent: open[len(open)-1], loopFrame: f.frames})
		f.frames++
		f.regionAt[k] = len(f.regions) - 1
		open = append(open, len(f.regions)-1)
	}
	regions := f.regions
	open = open[:1]
	for seg, next := 0, 1; seg < f.m; seg++ {
		for regions[open[len(open)-1]].end < seg {
			open = open[:len(open)-1]
		}
		if next < len(regions) && regions[next].start == seg {
			open = append(open, next)
			next++
		}
		f.inner[seg] = open[len(open)-1]
	}
	for ri := range regions {
		r := &regions[ri]
		for s := r.start; s <= r.end; {
			r.units = append(r.units, s)
			if c := f.regionAt[s]; c > 0 && c != ri {
				s = regions[c].end + 1
			} else {
				s++
			}
		}
		r.unitFrame = f.frames
		f.frames += len(r.units)
	}
	// The $pcs each region's dispatcher tells apart, the lowest and highest
	// sent to its blocks, inner regions first (they come later in regions).
	// Nested regions could make their tables, one per region, grow as the
	// square of the function; a function whose tables would outgrow it
	// severalfold is left as it was.
	entries := 0
	for ri := len(regions) - 1; ri > 0; ri-- {
		r := &regions[ri]
		r.lo, r.hi = -1, -1
		for _, s := range r.units {
			lo, hi := f.pcLo[s], f.pcHi[s]
			if c := f.regionAt[s]; c > 0 && c != ri {
				lo, hi = regions[c].lo, regions[c].hi
			}
			if lo >= 0 && (r.lo < 0 || lo < r.lo) {
				r.lo = lo
			}
			r.hi = max(r.hi, hi)
		}
		if entries += int(r.hi - r.lo + 1); entries > 4*len(f.code)+1024 {
			return errShape
		}
	}
	return nil
}

// emit writes the function with its regions.
func (lf *loopifier) emit(f *shape) ([]byte, stats, error) {
	code, ins, d, regions := f.code, f.ins, f.d, f.regions
	out := make([]byte, 0, len(code)+len(code)/16)
	lf.pos = fill(lf.pos, f.frames, 0)
	pos := lf.pos // stack index of each open frame
	stack := lf.stack[:0]
	push := func(fr int) { pos[fr] = len(stack); stack = append(stack, fr) }
	pop := func(fr int) error {
		if len(stack) == 0 || stack[len(stack)-1] != fr {
			return errShape
		}
		stack = stack[:len(stack)-1]
		return nil
	}
	depth := func(fr int) uint32 { return uint32(len(stack) - 1 - pos[fr]) }
	onStack := func(fr int) bool { return pos[fr] < len(stack) && stack[pos[fr]] == fr }
	// openUnits opens r's unit blocks, last first, and its dispatcher.
	openUnits := func(ri int) {
		r := &regions[ri]
		if ri != 0 && len(r.units) == 1 {
			return // one segment: nothing to dispatch
		}
		for u := len(r.units) - 1; u >= 0; u-- {
			out = append(out, 0x02, 0x40)
			push(r.unitFrame + u)
		}
		if ri == 0 {
			out = appendU32(append(out, 0x20), d.pc)
			out = appendU32(append(out, 0x0e), uint32(len(d.labels)-1))
			for _, l := range d.labels {
				if s := int(l); s >= f.m {
					out = appendU32(out, depth(f.loopD))
				} else {
					out = appendU32(out, depth(r.unitFrame+r.unit(s)))
				}
			}
			return
		}
		out = appendU32(append(out, 0x20), d.pc)
		out = appendS32(append(out, 0x41), r.pc)
		out = append(out, 0x46, 0x0d, 0x00) // i32.eq, br_if 0
		out = appendU32(append(out, 0x20), d.pc)
		out = appendS32(append(out, 0x41), r.lo)
		out = append(out, 0x6b) // i32.sub
		out = appendU32(append(out, 0x0e), uint32(r.hi-r.lo+1))
		for n := r.lo; n <= r.hi; n++ {
			u := 0
			if s := f.pcSeg(n); s >= r.start && s <= r.end {
				u = r.unit(s)
			}
			out = appendU32(out, depth(r.unitFrame+u))
		}
		def := 0 // $pcs past the function's table go where its default sends them
		if s := f.pcSeg(-1); s >= r.start && s <= r.end {
			def = r.unit(s)
		}
		out = appendU32(out, depth(r.unitFrame+def))
	}
	var openRegions []int
	closeRegions := func(before int) error { // the regions ending before segment before
		for len(openRegions) > 0 && regions[openRegions[len(openRegions)-1]].end < before {
			r := &regions[openRegions[len(openRegions)-1]]
			out = append(out, 0x0b)
			if err := pop(r.loopFrame); err != nil {
				return err
			}
			openRegions = openRegions[:len(openRegions)-1]
		}
		return nil
	}
	made, direct := 0, 0
	push(0)
	for i := 0; i < len(ins); i++ {
		in := &ins[i]
		switch {
		case i == f.di:
			out = append(out, code[in.at:in.end]...)
			push(f.loopD)
			openUnits(0)
			i = f.table
		case i > f.table && i < f.dEnd && in.op == 0x0b && f.seg[i] >= 0 && f.segStart[f.seg[i]] == i:
			s := f.seg[i]
			if c := f.regionAt[s]; c > 0 && s > 0 && len(regions[c].units) > 1 {
				// Falling into the region from the block before it: its
				// dispatcher must send this to its first block, whatever
				// $pc holds (Go uses it as scratch around indirect calls).
				out = appendS32(append(out, 0x41), regions[c].pc)
				out = appendU32(append(out, 0x21), d.pc)
			}
			if err := closeRegions(s); err != nil {
				return nil, stats{}, err
			}
			level := 0
			if len(openRegions) > 0 {
				level = openRegions[len(openRegions)-1]
			}
			if rr := &regions[level]; level == 0 || len(rr.units) > 1 {
				out = append(out, 0x0b)
				if err := pop(rr.unitFrame + rr.unit(s)); err != nil {
					return nil, stats{}, err
				}
			}
			if c := f.regionAt[s]; c > 0 {
				out = append(out, 0x03, 0x40)
				push(regions[c].loopFrame)
				openRegions = append(openRegions, c)
				openUnits(c)
				if len(regions[c].units) > 1 {
					out = append(out, 0x0b)
					if err := pop(regions[c].unitFrame); err != nil {
						return nil, stats{}, err
					}
				}
				made++
			}
		case i == f.dEnd:
			if err := closeRegions(f.m); err != nil {
				return nil, stats{}, err
			}
			out = append(out, 0x0b)
			if err := pop(f.loopD); err != nil {
				return nil, stats{}, err
			}
		case in.op == 0x0c || in.op == 0x0d || in.op == 0x0e:
			out = append(out, in.op)
			if in.op == 0x0e {
				out = appendU32(out, uint32(in.tn-1))
			}
			for _, fr := range lf.targetsOf(in) {
				if t := f.jump[i]; t >= 0 {
					if fr = f.jumpFrame(f.seg[i], t); fr != f.loopD {
						direct++
					}
				}
				if !onStack(fr) {
					return nil, stats{}, errShape
				}
				out = appendU32(out, depth(fr))
			}
		default:
			out = append(out, code[in.at:in.end]...)
			switch in.op {
			case 0x02, 0x03, 0x04:
				push(int(in.frame))
			case 0x0b:
				if err := pop(int(in.frame)); err != nil {
					return nil, stats{}, err
				}
			}
		}
	}
	if len(stack) != 0 || made == 0 {
		return nil, stats{}, errShape
	}
	return out, stats{direct: direct, loops: made}, nil
}

// jumpFrame is the frame a jump from segment s to segment t branches to, with
// $pc already set for t: in the innermost region holding both, the block of
// t's unit when the jump goes forward, the region's loop when it goes back.
func (f *shape) jumpFrame(s, t int) int {
	ri := f.inner[s]
	for ri != 0 && (t < f.regions[ri].start || t > f.regions[ri].end) {
		ri = f.regions[ri].parent
	}
	r := &f.regions[ri]
	if t > s {
		return r.unitFrame + r.unit(t)
	}
	return r.loopFrame
}
