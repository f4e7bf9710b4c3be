package abi

import (
	"encoding/binary"
	"iter"
	"slices"
	"strings"
	"unsafe"
)

// Pairs are string key/value pairs with unique keys: a request's selected
// headers, an agent's tags. They keep the ABI's encoding of a map, so a guest
// pays nothing for pairs its policy never reads: building a Go map, or even a
// slice of pairs, for every candidate of every decision would cost a Go guest
// more than the decision itself. The zero value is empty. Pairs are immutable.
//
// A guest's input Pairs point into the host's input buffer: like the rest of
// the input, they are valid only during the call.
type Pairs struct {
	n   int
	enc string // n × (str key, str value)
}

// MakePairs makes Pairs from keys and values in turn: MakePairs("region", "eu").
// A later duplicate key replaces an earlier one.
func MakePairs(kv ...string) Pairs {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return PairsOf(m)
}

// PairsOf returns m's entries as Pairs, sorted by key.
func PairsOf(m map[string]string) Pairs {
	if len(m) == 0 {
		return Pairs{}
	}
	keys := make([]string, 0, len(m))
	size := 0
	for k, v := range m {
		keys = append(keys, k)
		size += len(k) + len(v) + 2*5
	}
	slices.Sort(keys)
	e := Encoder{B: make([]byte, 0, size)}
	for _, k := range keys {
		e.str(k)
		e.str(m[k])
	}
	return Pairs{n: len(m), enc: unsafe.String(unsafe.SliceData(e.B), len(e.B))}
}

// Len is the number of pairs.
func (ps Pairs) Len() int { return ps.n }

// Get returns the value of key.
func (ps Pairs) Get(key string) (string, bool) {
	for k, v := range ps.All() {
		if k == key {
			return v, true
		}
	}
	return "", false
}

// Value returns the value of key, or "" when it is absent.
func (ps Pairs) Value(key string) string {
	v, _ := ps.Get(key)
	return v
}

// All yields the pairs in their order. It stops early, and yields nothing more,
// on an encoding that does not hold the pairs it claims (which the host's
// decoders refuse, so only a guest trusting a broken host could see one).
func (ps Pairs) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		s := ps.enc
		for range ps.n {
			k, rest, ok := cutStr(s)
			if !ok {
				return
			}
			v, rest, ok := cutStr(rest)
			if !ok || !yield(k, v) {
				return
			}
			s = rest
		}
	}
}

// Map returns the pairs as a map.
func (ps Pairs) Map() map[string]string {
	if ps.n == 0 {
		return nil
	}
	m := make(map[string]string, ps.n)
	for k, v := range ps.All() {
		m[k] = v
	}
	return m
}

// String formats the pairs as k=v, separated by spaces.
func (ps Pairs) String() string {
	var b strings.Builder
	for k, v := range ps.All() {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

// valid reports whether enc holds exactly n pairs.
func (ps Pairs) valid() bool {
	s := ps.enc
	for range 2 * ps.n {
		var ok bool
		if _, s, ok = cutStr(s); !ok {
			return false
		}
	}
	return s == ""
}

// cutStr reads one length-prefixed string from the front of s.
func cutStr(s string) (str, rest string, ok bool) {
	n, k := binary.Uvarint(unsafe.Slice(unsafe.StringData(s), len(s)))
	if k <= 0 || n > uint64(len(s)-k) {
		return "", s, false
	}
	return s[k : k+int(n)], s[k+int(n):], true
}
