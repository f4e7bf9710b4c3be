package preempt

// Direct jumps for Go's dispatch loops.
//
// Go's Wasm backend compiles a function into one loop around a dispatcher: a
// run of empty blocks ending in `local.get $pc; br_table`, with the code of
// each basic block after the end of one of those blocks. A jump between basic
// blocks sets $pc and branches back to the loop:
//
//	i32.const N
//	local.set $pc
//	br $loop
//
// so every taken branch in a Go guest runs the dispatcher's indirect jump,
// which the processor mispredicts often: it is most of what a Go guest's
// branchy code costs. When the block that br_table would pick for N is still
// open at the jump — the jump goes forward — branching straight to that block
// lands on the same code with the same $pc, without the dispatcher. The
// rewrite does that, and leaves backward jumps (loop back-edges) alone, so
// every cycle still passes the loop header and its poll.
//
// Nothing here depends on Go: any loop that begins with empty blocks, then
// local.get and br_table, and nothing else, dispatches exactly this way.

// dispatch describes a dispatch loop found at loop header depth level.
type dispatch struct {
	level  int      // control-stack index of the loop
	pc     uint32   // the local br_table reads
	labels []uint32 // br_table's labels, relative to inside all the blocks; last is the default
	blocks int      // how many blocks the dispatcher opens
}

// target is the control-stack index of the block that br_table picks for n.
func (d *dispatch) target(n uint32) int {
	l := d.labels[len(d.labels)-1]
	if int64(n) < int64(len(d.labels)-1) {
		l = d.labels[n]
	}
	return d.level + d.blocks - int(l)
}

// findDispatch reads the code after a loop's block type at code[p:] and reports
// the dispatcher it starts, if it is one.
func findDispatch(code []byte, p, level int) *dispatch {
	r := reader{b: code, p: p}
	blocks := 0
	for r.p+1 < len(r.b) && r.b[r.p] == 0x02 && r.b[r.p+1] == 0x40 { // block (empty)
		r.p += 2
		blocks++
	}
	if blocks == 0 || r.byte() != 0x20 { // local.get
		return nil
	}
	pc := r.u32()
	if r.byte() != 0x0e { // br_table
		return nil
	}
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(code)) {
		return nil
	}
	labels := make([]uint32, 0, n+1)
	for i := uint32(0); i <= n && r.err == nil; i++ {
		l := r.u32()
		if l > uint32(blocks) { // a dispatcher that leaves its loop is not one
			return nil
		}
		labels = append(labels, l)
	}
	if r.err != nil {
		return nil
	}
	return &dispatch{level: level, pc: pc, labels: labels, blocks: blocks}
}

// directJump reports the new depth of the jump at code[p:] — `i32.const N;
// local.set $pc; br D` to d's loop, from control-stack depth depth, with open
// telling whether stack index i is one of d's blocks still open — and where the
// br's depth immediate starts and ends. ok is false when the code there is
// something else or the jump goes backward.
func directJump(code []byte, p int, d *dispatch, depth int, open func(int) bool) (newDepth uint32, at, end int, ok bool) {
	r := reader{b: code, p: p}
	if r.byte() != 0x41 { // i32.const
		return 0, 0, 0, false
	}
	n := r.s32()
	if r.byte() != 0x21 || r.u32() != d.pc { // local.set $pc
		return 0, 0, 0, false
	}
	if r.byte() != 0x0c { // br
		return 0, 0, 0, false
	}
	at = r.p
	old := r.u32()
	if r.err != nil || depth-int(old) != d.level {
		return 0, 0, 0, false
	}
	t := d.target(uint32(n))
	if t <= d.level || t > depth || !open(t) {
		return 0, 0, 0, false
	}
	return uint32(depth - t), at, r.p, true
}

// s32 reads a signed LEB128 of at most 32 bits.
func (r *reader) s32() int32 {
	var x int32
	var s uint
	for s < 35 {
		c := r.byte()
		x |= int32(c&0x7f) << s
		s += 7
		if c&0x80 == 0 {
			if s < 32 && c&0x40 != 0 {
				x |= -1 << s
			}
			return x
		}
	}
	r.fail("s32 too long")
	return 0
}
