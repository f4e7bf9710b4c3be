//go:build unix && !linux

package wasm

// hugePages is Linux's (memory_linux.go); elsewhere the system decides.
func hugePages([]byte) {}

// dropPages is a no-op where the system has no madvise in Go's syscall
// package: the pages go back when the range is unmapped.
func dropPages([]byte) {}
