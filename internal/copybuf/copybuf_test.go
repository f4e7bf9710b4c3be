package copybuf

import "testing"

// A buffer put back is the one got next, and a foreign one is never handed out.
func TestPoolReusesItsBuffersAndRefusesOthers(t *testing.T) {
	var p Pool
	a := p.Get()
	if len(a) != Size {
		t.Fatalf("Get gave %d bytes, want %d", len(a), Size)
	}
	p.Put(make([]byte, 10))
	if b := p.Get(); len(b) != Size {
		t.Fatalf("a 10-byte buffer put back came out: %d bytes", len(b))
	}
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get()) }); n > 1 {
		t.Fatalf("%v allocations per Get and Put, want at most the one for the pointer", n)
	}
}
