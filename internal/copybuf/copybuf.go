// Package copybuf is a pool of the 32 KiB buffers that a reverse proxy copies
// bodies through (httputil.BufferPool). Without one, httputil.ReverseProxy
// allocates and clears a fresh buffer for every call: at proxy rates that
// buffer is most of the garbage and a visible share of the CPU.
package copybuf

import "sync"

// Size is the length of each buffer, ReverseProxy's own default.
const Size = 32 << 10

// Pool implements httputil.BufferPool.
type Pool struct{ p sync.Pool }

// Get returns a buffer of Size bytes.
func (b *Pool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, Size)
}

// Put returns a buffer for reuse; a buffer of another size is dropped.
func (b *Pool) Put(buf []byte) {
	if len(buf) != Size {
		return
	}
	b.p.Put(&buf)
}
