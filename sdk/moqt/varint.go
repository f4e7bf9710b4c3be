package moqt

import (
	"fmt"
	"io"
	"math/bits"
)

// MaxVarint16 is the largest integer draft 16's RFC 9000 varint can carry.
// Drafts 17+ carry every uint64.
const MaxVarint16 = 1<<62 - 1

// MaxVarint returns the largest integer v's varint encoding can carry.
func MaxVarint(v Version) uint64 {
	if v.leadingOnes() {
		return 1<<64 - 1
	}
	return MaxVarint16
}

// Draft 18+ allow the 7-byte leading-ones form; draft 17 forbids it.

// VarintLen is the number of bytes AppendVarint writes for x.
func VarintLen(v Version, x uint64) int {
	if !v.leadingOnes() {
		switch {
		case x < 1<<6:
			return 1
		case x < 1<<14:
			return 2
		case x < 1<<30:
			return 4
		default:
			return 8
		}
	}
	switch {
	case x < 1<<7:
		return 1
	case x < 1<<14:
		return 2
	case x < 1<<21:
		return 3
	case x < 1<<28:
		return 4
	case x < 1<<35:
		return 5
	case x < 1<<42:
		return 6
	case x < 1<<56:
		// The 7-byte form (1111110x) is invalid in draft 17 and optional in 18+;
		// skipping it keeps every encoding valid in all of them.
		return 8
	default:
		return 9
	}
}

// AppendVarint appends x in v's varint encoding, using the shortest form. In
// draft 16 x must not exceed MaxVarint16: it panics otherwise, so callers that
// carry peer values between versions check MaxVarint first.
func AppendVarint(b []byte, v Version, x uint64) []byte {
	n := VarintLen(v, x)
	if !v.leadingOnes() {
		if x > MaxVarint16 {
			panic(fmt.Sprintf("moqt: %d does not fit a draft-16 varint", x))
		}
		prefix := byte(bits.Len(uint(n)) - 1) // 1,2,4,8 → 0,1,2,3
		return appendBE(b, x, n, prefix<<6)
	}
	switch n {
	case 8:
		b = append(b, 0xfe)
		return appendBE(b, x, 7, 0)
	case 9:
		b = append(b, 0xff)
		return appendBE(b, x, 8, 0)
	}
	mark := byte(0xff << (9 - n)) // n leading ones followed by a zero
	return appendBE(b, x, n, mark)
}

// appendBE appends the low n bytes of x big-endian, ORing mark into the first.
func appendBE(b []byte, x uint64, n int, mark byte) []byte {
	for i := n - 1; i >= 0; i-- {
		c := byte(x >> (8 * uint(i)))
		if i == n-1 {
			c |= mark
		}
		b = append(b, c)
	}
	return b
}

// varintSize returns the total length of the varint whose first byte is c, or
// 0 for a code point v does not allow.
func varintSize(v Version, c byte) int {
	if !v.leadingOnes() {
		return 1 << (c >> 6)
	}
	ones := bits.LeadingZeros8(^c)
	switch {
	case ones <= 5:
		return ones + 1
	case ones == 6:
		if v == Draft17 {
			return 0 // 1111110x: "an invalid code point" in draft 17 §1.4.1
		}
		return 7
	case ones == 7:
		return 8
	default:
		return 9
	}
}

// varintValue decodes a varint whose length is len(p) (already checked).
func varintValue(v Version, p []byte) uint64 {
	n := len(p)
	var x uint64
	switch {
	case !v.leadingOnes():
		x = uint64(p[0] & 0x3f)
	case n <= 7:
		x = uint64(p[0] & (0x7f >> (n - 1)))
	}
	for _, c := range p[1:] {
		x = x<<8 | uint64(c)
	}
	return x
}

// ParseVarint decodes one varint from the start of p, returning it and its length.
func ParseVarint(p []byte, v Version) (uint64, int, error) {
	if len(p) == 0 {
		return 0, 0, &ProtocolError{Code: CodeProtocolViolation, Msg: "truncated"}
	}
	n := varintSize(v, p[0])
	if n == 0 {
		return 0, 0, violation("varint code point 0x%02x is invalid in %s", p[0], v)
	}
	if len(p) < n {
		return 0, 0, &ProtocolError{Code: CodeProtocolViolation, Msg: "truncated"}
	}
	return varintValue(v, p[:n]), n, nil
}

// ReadVarint reads one varint from r. An r that ends before the first byte
// yields io.EOF; one that ends inside it yields io.ErrUnexpectedEOF.
func ReadVarint(r io.Reader, v Version) (uint64, error) {
	if br, ok := r.(io.ByteReader); ok {
		return readVarintBytes(br, v) // buffered: no read call, no buffer, per byte
	}
	var buf [9]byte
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return 0, err
	}
	n := varintSize(v, buf[0])
	if n == 0 {
		return 0, violation("varint code point 0x%02x is invalid in %s", buf[0], v)
	}
	if _, err := io.ReadFull(r, buf[1:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return varintValue(v, buf[:n]), nil
}

func readVarintBytes(r io.ByteReader, v Version) (uint64, error) {
	var buf [9]byte
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	buf[0] = b
	n := varintSize(v, b)
	if n == 0 {
		return 0, violation("varint code point 0x%02x is invalid in %s", b, v)
	}
	for i := 1; i < n; i++ {
		if buf[i], err = r.ReadByte(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	return varintValue(v, buf[:n]), nil
}
