package wasm

import "github.com/tetratelabs/wazero/experimental"

// guestMemory allocates a guest's linear memory where the system gives it
// back as soon as the instance closes (memory_unix.go: a mapping of its own),
// rather than in the Go heap, where a retired module's memory waited for a
// collection and then for the scavenger while the heap's goal grew to twice
// the garbage (RATIONALE.md, Hot swap and memory).
var guestMemory experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(allocateMemory)

// heapMemory is a linear memory in the Go heap, as wazero makes one without
// an allocator: growing it copies it.
type heapMemory struct{ buf []byte }

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, max(size, 2*uint64(cap(m.buf))))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
