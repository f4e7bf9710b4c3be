// Package logring keeps a child process's last output lines and lets callers
// follow new ones, as `sluice logs` and the agent's logs API read them.
package logring

import (
	"bufio"
	"context"
	"io"
	"sync"
)

// Ring holds the last lines of one process's output; safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	lines []string
	max   int
	subs  map[chan string]struct{}
	done  bool
}

// New returns a ring that keeps the last max lines.
func New(max int) *Ring { return &Ring{max: max, subs: map[chan string]struct{}{}} }

// CopyFrom adds every line read from rd until it ends, then ends every
// follower's channel. A line over 1 MiB ends the copy.
func (r *Ring) CopyFrom(rd io.Reader) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		r.Add(sc.Text())
	}
	r.mu.Lock()
	r.done = true
	for ch := range r.subs {
		close(ch)
	}
	r.subs = map[chan string]struct{}{}
	r.mu.Unlock()
}

// Add keeps line and hands it to the followers; a follower too slow to take
// it loses it, so that a reader never blocks the process's output.
func (r *Ring) Add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
	for ch := range r.subs {
		select {
		case ch <- line:
		default:
		}
	}
}

// Follow returns the lines so far and, if follow, a channel of new lines that
// closes when the output ends or ctx ends.
func (r *Ring) Follow(ctx context.Context, follow bool) ([]string, <-chan string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	past := append([]string(nil), r.lines...)
	if !follow || r.done {
		return past, nil
	}
	ch := make(chan string, 256)
	r.subs[ch] = struct{}{}
	go func() { // ends with ctx; CopyFrom may have closed ch first
		<-ctx.Done()
		r.mu.Lock()
		if _, ok := r.subs[ch]; ok {
			delete(r.subs, ch)
			close(ch)
		}
		r.mu.Unlock()
	}()
	return past, ch
}
