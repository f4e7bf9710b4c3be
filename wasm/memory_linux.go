package wasm

import "syscall"

// hugePages asks Linux to back b, a guest's initial memory, with transparent
// huge pages (2 MiB) where it can. A Go guest touches most of its initial
// memory (~8 MiB) while it initialises, and taking that in 4 KiB page faults
// made an instantiation cost twice what the same guest costs in the Go heap;
// in huge pages it costs less than in the heap (RATIONALE.md, Hot swap).
// Memory the guest grows into later keeps small pages, so a huge page
// half-used costs little. A system without them (or with them off) ignores
// the hint.
func hugePages(b []byte) {
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
}

// dropPages gives a freed memory's pages back to the system now; the address
// range stays mapped, reading zeros, until it is unmapped.
func dropPages(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }
