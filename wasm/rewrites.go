package wasm

import (
	"slices"
	"sync"

	"github.com/sluicegw/sluice/wasm/internal/preempt"
)

// rewrites keeps the rewritten form of the modules the host rewrote last, by
// the sha256 of the module as uploaded, so that a module loaded again soon
// (swapped back after a third, reloaded from a file that changed back) skips
// the rewrite (~13 ms for a 2.7 MB Go guest, and as much garbage). It is
// bounded in entries and bytes; the slice of a module in use is shared with
// it, so the cache costs memory only for modules no slot runs.
type rewrites struct {
	mu      sync.Mutex
	entries []rewritten // most recently used last
}

type rewritten struct {
	sum  string
	wasm []byte
}

const (
	rewritesKept     = 4        // modules
	rewritesMaxBytes = 16 << 20 // at most, all entries together
)

// of is b, whose sha256 is sum, rewritten: from the cache when it is there.
func (r *rewrites) of(b []byte, sum string) ([]byte, error) {
	r.mu.Lock()
	for i, e := range r.entries {
		if e.sum == sum {
			r.entries = append(slices.Delete(r.entries, i, i+1), e)
			r.mu.Unlock()
			return e.wasm, nil
		}
	}
	r.mu.Unlock()
	w, err := preempt.Rewrite(b) // outside the lock: slots rewrite in parallel
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if e.sum == sum { // another load of it finished first
			return e.wasm, nil
		}
	}
	r.entries = append(r.entries, rewritten{sum, w})
	total := 0
	for _, e := range r.entries {
		total += len(e.wasm)
	}
	for len(r.entries) > 1 && (len(r.entries) > rewritesKept || total > rewritesMaxBytes) {
		total -= len(r.entries[0].wasm)
		r.entries = slices.Delete(r.entries, 0, 1)
	}
	return w, nil
}

// has reports whether the rewrite of the module whose sha256 is sum is kept.
func (r *rewrites) has(sum string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if e.sum == sum {
			return true
		}
	}
	return false
}
