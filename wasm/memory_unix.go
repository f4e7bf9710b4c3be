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
// closes, after which nothing runs in the memory (the host's gate sees to
// that); should a guest still run in it, it reads zeros rather than faulting
// the whole process, which a fault in compiled guest code does
// (wasm/RATIONALE.md, "Hot swap and memory").
func (m *mappedMemory) Free() {
	if m.buf == nil {
		return
	}
	b := m.buf[:cap(m.buf)]
	m.buf = nil
	if unmapDelay == 0 {
		_ = syscall.Munmap(b)
		return
	}
	dropPages(b)
	time.AfterFunc(unmapDelay, func() { _ = syscall.Munmap(b) })
}

// unmapDelay is how long a freed memory's address range stays reserved, with
// no pages behind it: longer than a call's deadline (100 ms by default) or a
// dry run's (1 s), and short enough that a burst of closed instances (a
// million trapping calls) stays far under the system's mapping limit. The
// tests set it to 0, unmapping at once, so that a use after Free crashes them.
var unmapDelay = 3 * time.Second
