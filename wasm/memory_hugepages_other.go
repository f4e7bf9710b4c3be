//go:build unix && !linux

package wasm

// hugePages is Linux's (memory_linux.go); elsewhere the system decides.
func hugePages([]byte) {}
