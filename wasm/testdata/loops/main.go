// Command loops is a Go route policy whose answer is a checksum of code in
// every control-flow shape the Go compiler gives loops — nested loops with
// labelled break and continue, goto, switches, range over strings and
// slices, sorting, closures, panics recovered inside loops, and goroutines
// switching over channels inside loops (which unwinds and resumes the Wasm
// stack through the loops' frames) — so that the host's tests can check that
// the preempt rewrite, which restructures those loops, leaves every result
// as it was.
package main

import (
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/sdk"
)

func route(in *sdk.RouteInput) sdk.RouteOutput {
	seed := uint64(len(in.StreamID))
	for _, b := range []byte(in.StreamID) {
		seed = seed*1099511628211 + uint64(b)
	}
	n := int(seed%23) + 5
	parts := []uint64{nested(n, seed), labelled(n, seed), gotos(n), switches(n, seed),
		runes(in.StreamID), sorted(n, seed), closures(n), recovered(n), pingPong(n, seed), collected(n)}
	out := sdk.RouteOutput{Agents: in.AgentList(len(parts))}
	for _, p := range parts {
		out.Agents = append(out.Agents, strconv.FormatUint(p, 36))
	}
	return out
}

func nested(n int, seed uint64) uint64 {
	s := seed
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			for k := 0; k < 3; k++ {
				s = s*31 + uint64(i*j+k)
			}
		}
	}
	return s
}

func labelled(n int, seed uint64) uint64 {
	s := uint64(0)
outer:
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			switch {
			case (seed>>uint(j%60))&1 == 1 && j > i:
				continue outer
			case i*j > 3*n:
				break outer
			}
			s += uint64(i ^ j)
		}
		s *= 3
	}
	return s
}

func gotos(n int) uint64 {
	s, i := uint64(1), 0
top:
	if i < n {
		s = s*7 + uint64(i)
		i++
		if i%4 == 0 {
			goto skip
		}
		goto top
	}
	return s
skip:
	s ^= 0xabcdef
	goto top
}

func switches(n int, seed uint64) uint64 {
	s := seed
	for i := 0; i < 4*n; i++ {
		switch (s + uint64(i)) % 7 {
		case 0:
			s += 1
		case 1, 2:
			s ^= s << 3
		case 3:
			for s%5 != 0 {
				s++
			}
		case 4:
			continue
		default:
			s = s*13 + 7
		}
		s ^= s >> 11
	}
	return s
}

func runes(id string) uint64 {
	s := uint64(0)
	for i, r := range id + "é→😀" + strings.Repeat("ab", len(id)%5) {
		s = s*131 + uint64(r) + uint64(i)
	}
	return s
}

func sorted(n int, seed uint64) uint64 {
	xs := make([]uint64, 4*n)
	for i := range xs {
		seed = seed*6364136223846793005 + 1442695040888963407
		xs[i] = seed >> 40
	}
	slices.Sort(xs)
	s := uint64(0)
	for i, x := range xs {
		if i > 0 && xs[i-1] > x {
			return 0
		}
		s = s*17 + x
	}
	return s
}

func closures(n int) uint64 {
	var fs []func(uint64) uint64
	for i := 0; i < n; i++ {
		fs = append(fs, func(x uint64) uint64 { return x*uint64(i+3) + 1 })
	}
	s := uint64(5)
	for _, f := range fs {
		s = f(s)
	}
	return s
}

func recovered(n int) (s uint64) {
	for i := 0; i < n; i++ {
		func() {
			defer func() {
				if r := recover(); r != nil {
					s += 1000
				}
			}()
			var xs []int
			if i%3 == 0 {
				_ = xs[i] // panics
			}
			s += uint64(i)
		}()
	}
	return s
}

func pingPong(n int, seed uint64) uint64 {
	ping, pong := make(chan uint64), make(chan uint64)
	go func() {
		for v := range ping {
			for k := 0; k < 3; k++ {
				v = v*5 + uint64(k)
				runtime.Gosched()
			}
			pong <- v
		}
		close(pong)
	}()
	s := seed
	for i := 0; i < n; i++ {
		ping <- s + uint64(i)
		s = <-pong
	}
	close(ping)
	<-pong
	return s
}

func collected(n int) uint64 {
	s := uint64(0)
	for i := 0; i < n; i++ {
		b := make([]byte, 1<<10)
		b[i] = byte(i)
		if i%8 == 0 {
			runtime.GC()
		}
		s += uint64(b[i]) + uint64(len(b))
	}
	return s
}

func init() { sdk.HandleRoute(route) }

func main() {}
