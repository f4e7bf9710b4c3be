//go:build unix

package wasm

import (
	"syscall"

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

// Free unmaps the memory; wazero calls it once, when the instance closes, after
// which nothing reads the memory (the host copies what it keeps of an output
// before the instance is used again or closed).
func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf[:cap(m.buf)])
		m.buf = nil
	}
}
