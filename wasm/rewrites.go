package wasm

import (
	"sync"

	"github.com/sluicegw/sluice/wasm/internal/preempt"
)

// rewrites keeps the interruptible form (preempt.Rewrite) of the last few
// modules, by the sha256 of the module as it arrived: a module swapped in again
// (one alternating with another, or uploaded again to go back to it) skips the
// rewrite, the largest part of a swap after wazero's cached compile (12 ms for
// a 2.7 MB Go guest, 38 ms at p99 under load). Its memory is a few modules'
// worth.
type rewrites struct {
	mu      sync.Mutex
	entries []rewritten // most recent last
	misses  int         // rewrites made, for tests
}

type rewritten struct {
	sum  [32]byte
	code []byte
}

const rewritesKept = 4

// of returns the rewrite of b, whose sha256 is sum.
func (r *rewrites) of(b []byte, sum [32]byte) ([]byte, error) {
	r.mu.Lock()
	for i, e := range r.entries {
		if e.sum == sum {
			r.entries = append(append(r.entries[:i:i], r.entries[i+1:]...), e)
			r.mu.Unlock()
			return e.code, nil
		}
	}
	r.misses++
	r.mu.Unlock()
	code, err := preempt.Rewrite(b)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	for _, e := range r.entries {
		if e.sum == sum { // rewritten meanwhile by a load of the same module
			r.mu.Unlock()
			return e.code, nil
		}
	}
	if len(r.entries) == rewritesKept {
		r.entries = append(r.entries[:0:0], r.entries[1:]...)
	}
	r.entries = append(r.entries, rewritten{sum, code})
	r.mu.Unlock()
	return code, nil
}

// made is how many rewrites r has made.
func (r *rewrites) made() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.misses
}
