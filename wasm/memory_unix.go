//go:build unix

package wasm

import (
	"syscall"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// mappedMemory is a linear memory in an anonymous mapping of its own,
// reserved at the memory's maximum size (the slot's memoryPages at most), so
// that it grows in place: the system backs only the pages the guest touches,
// and Free returns all of them at once. Where the system has them, the
// mapping asks for huge pages (hugePages).
type mappedMemory struct{ buf []byte }

func allocateMemory(capacity, max uint64) experimental.LinearMemory {
	if max > 0 && max <= 1<<32 {
		b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err == nil {
			hugePages(b[:min(capacity, max)])
			return &mappedMemory{buf: b[:0]}
		}
	}
	return &heapMemory{}
}

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		return nil // past the maximum: memory.grow fails, as without an allocator
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free gives the memory's pages back at once (MADV_DONTNEED) and unmaps the
// reservation unmapDelay later. wazero calls it once, when the instance
// closes, after which nothing should read the memory; should a guest still be
// running in it, it reads zeros rather than faulting the whole process, which
// a fault in compiled guest code does (CI saw it: wasm/RATIONALE.md, "Hot swap
// and memory").
func (m *mappedMemory) Free() {
	if m.buf == nil {
		return
	}
	b := m.buf[:cap(m.buf)]
	m.buf = nil
	dropPages(b)
	time.AfterFunc(unmapDelay, func() { _ = syscall.Munmap(b) })
}

// unmapDelay is how long a freed memory's address range stays reserved, with
// no pages behind it: longer than a call's deadline (100 ms by default) or a
// dry run's (1 s), and short enough that a burst of closed instances (a
// million trapping calls) stays far under the system's mapping limit.
const unmapDelay = 3 * time.Second
