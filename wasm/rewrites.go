package wasm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/wasm/internal/preempt"
)

// rewrites keeps the interruptible form (preempt.Rewrite) of the last few
// modules in memory, and of the last sixteen in dir beside wazero's
// compilation cache, by the sha256 of the module as it arrived: a module swapped in again
// (one alternating with another, uploaded again to go back to it, or loaded
// again after a restart) skips the rewrite, the largest part of a swap after
// wazero's cached compile (41–58 ms for a 2.7 MB Go guest). Its memory is a few
// modules' worth; a file is named by the module's sha256 and the rewrite's
// version (preempt.Version), so a new version never reads an old one's. The
// directory is trusted as wazero's cache beside it is, which holds machine
// code: its files end with a checksum against damage, not against an attacker
// who can write there.
type rewrites struct {
	dir     string // "" keeps nothing on disk
	keep    int    // files kept in dir, the most recently used; 0: rewritesOnDisk
	mu      sync.Mutex
	entries []rewritten // most recent last
	misses  int         // rewrites made, for tests

	// For the A/B measurement of ab_test.go only: rewrite replaces
	// preempt.Rewrite when set, and uncached makes every load rewrite.
	rewrite  func([]byte) ([]byte, error)
	uncached bool
}

type rewritten struct {
	sum  [32]byte
	code []byte
}

const (
	rewritesKept   = 4  // in memory
	rewritesOnDisk = 16 // 2.7 MB each for a Go guest
)

// of returns the rewrite of b, whose sha256 is sum.
func (r *rewrites) of(b []byte, sum [32]byte) ([]byte, error) {
	if r.uncached {
		return r.rewrite(b)
	}
	r.mu.Lock()
	for i, e := range r.entries {
		if e.sum == sum {
			r.entries = append(append(r.entries[:i:i], r.entries[i+1:]...), e)
			r.mu.Unlock()
			return e.code, nil
		}
	}
	r.mu.Unlock()
	code, err := r.read(sum)
	if err != nil {
		r.mu.Lock()
		r.misses++
		r.mu.Unlock()
		rw := preempt.Rewrite
		if r.rewrite != nil {
			rw = r.rewrite
		}
		if code, err = rw(b); err != nil {
			return nil, err
		}
		r.write(sum, code)
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

// file is where the rewrite of the module whose sha256 is sum is kept.
func (r *rewrites) file(sum [32]byte) string {
	return filepath.Join(r.dir, hex.EncodeToString(sum[:])+"-v"+strconv.Itoa(preempt.Version)+".wasm")
}

// read returns the kept rewrite of the module whose sha256 is sum. A file
// ends with the sha256 of the rest, so one cut short or damaged is not used.
func (r *rewrites) read(sum [32]byte) ([]byte, error) {
	if r.dir == "" {
		return nil, os.ErrNotExist
	}
	name := r.file(sum)
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if n := len(b) - sha256.Size; n < 0 || sha256.Sum256(b[:n]) != [32]byte(b[n:]) {
		return nil, errDamaged
	}
	now := time.Now()
	_ = os.Chtimes(name, now, now) // used: the last to be pruned
	return b[:len(b)-sha256.Size], nil
}

var errDamaged = errors.New("wasm: a kept rewrite is damaged")

// write keeps code, the rewrite of the module whose sha256 is sum, and its
// sha256, written to a temporary file and renamed, so that a reader sees all
// of it or nothing. A failure only costs the next load a rewrite.
func (r *rewrites) write(sum [32]byte, code []byte) {
	if r.dir == "" || os.MkdirAll(r.dir, 0o700) != nil {
		return
	}
	f, err := os.CreateTemp(r.dir, "partial-*")
	if err != nil {
		return
	}
	check := sha256.Sum256(code)
	_, err = f.Write(append(code[:len(code):len(code)], check[:]...))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), r.file(sum))
	}
	if err != nil {
		os.Remove(f.Name())
		return
	}
	r.prune()
}

// prune removes the least recently used rewrites beyond what r keeps on disk,
// and what a write cut short left.
func (r *rewrites) prune() {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return
	}
	type kept struct {
		name string
		used time.Time
	}
	var files []kept
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(e.Name(), "partial-") && time.Since(info.ModTime()) > time.Hour:
			os.Remove(filepath.Join(r.dir, e.Name()))
		case strings.HasSuffix(e.Name(), ".wasm"):
			files = append(files, kept{e.Name(), info.ModTime()})
		}
	}
	keep := r.keep
	if keep <= 0 {
		keep = rewritesOnDisk
	}
	if len(files) <= keep {
		return
	}
	slices.SortFunc(files, func(a, b kept) int { return b.used.Compare(a.used) })
	for _, f := range files[keep:] {
		os.Remove(filepath.Join(r.dir, f.name))
	}
}

// made is how many rewrites r has made.
func (r *rewrites) made() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.misses
}
