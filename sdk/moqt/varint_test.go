package moqt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Vectors: draft 16 from RFC 9000 §A.1 (its "Example Integer Encodings");
// draft 17 from draft-ietf-moq-transport-17 §1.4.1, except 0xed7f3e7d, taken
// from draft 18's corrected table (draft 17's 0xdd7f3e7d is a 3-byte prefix;
// see TestVarintDraft17ErratumIsThreeBytes).
var varintVectors = []struct {
	v     Version
	hex   string
	value uint64
}{
	{Draft16, "25", 37},
	{Draft16, "4025", 37},
	{Draft16, "7bbd", 15293},
	{Draft16, "9d7f3e7d", 494878333},
	{Draft16, "c2197c5eff14e88c", 151288809941952652},
	{Draft17, "25", 37},
	{Draft17, "8025", 37},
	{Draft17, "bbbd", 15293},
	{Draft17, "ed7f3e7d", 226442877},
	{Draft17, "faa1a0e403d8", 2893212287960},
	{Draft17, "fefa318fa8e3ca11", 70423237261249041},
	{Draft17, "ffffffffffffffffff", 1<<64 - 1},
	{Draft19, "ed7f3e7d", 226442877},
	{Draft19, "fc8998abc66bc0", 151288809941952}, // draft 18/19's 7-byte example
}

func TestVarintVectorsDecode(t *testing.T) {
	for _, tc := range varintVectors {
		b := unhex(t, tc.hex)
		got, n, err := ParseVarint(b, tc.v)
		if err != nil || got != tc.value || n != len(b) {
			t.Errorf("%s %s: got %d (%d bytes, %v), want %d", tc.v, tc.hex, got, n, err, tc.value)
		}
		// A buffered reader (io.ByteReader) and a plain one take two paths.
		for _, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b))} {
			got, err := ReadVarint(r, tc.v)
			if err != nil || got != tc.value {
				t.Errorf("%s %s: ReadVarint(%T) %d, %v", tc.v, tc.hex, r, got, err)
			}
		}
		// Cut short, both say the varint ended early.
		for _, r := range []io.Reader{bytes.NewReader(b[:len(b)-1]), iotest.OneByteReader(bytes.NewReader(b[:len(b)-1]))} {
			if _, err := ReadVarint(r, tc.v); len(b) > 1 && err != io.ErrUnexpectedEOF {
				t.Errorf("%s %s cut short: ReadVarint(%T) err %v, want unexpected EOF", tc.v, tc.hex, r, err)
			}
		}
	}
}

func TestVarintVectorsEncodeMinimal(t *testing.T) {
	for _, tc := range varintVectors {
		b := unhex(t, tc.hex)
		if got := AppendVarint(nil, tc.v, tc.value); !bytes.Equal(got, b) && len(got) > len(b)+1 {
			t.Errorf("%s %d: encoded %x, want %s or shorter", tc.v, tc.value, got, tc.hex)
		}
	}
	// The minimal forms of the non-minimal vectors.
	if got := AppendVarint(nil, Draft16, 37); !bytes.Equal(got, []byte{0x25}) {
		t.Errorf("draft 16 37 = %x", got)
	}
	if got := AppendVarint(nil, Draft17, 37); !bytes.Equal(got, []byte{0x25}) {
		t.Errorf("draft 17 37 = %x", got)
	}
}

func TestVarintDraft17ErratumIsThreeBytes(t *testing.T) {
	got, n, err := ParseVarint(unhex(t, "dd7f3e7d"), Draft17)
	if err != nil || n != 3 || got != 0x1d7f3e {
		t.Fatalf("got %d, %d bytes, %v; want 0x1d7f3e in 3 bytes", got, n, err)
	}
}

func TestVarintDraft17RejectsSevenByteForm(t *testing.T) {
	// 0xfc8998abc66bc0 is draft 18's 7-byte example; draft 17 forbids 1111110x.
	for _, c := range []byte{0xfc, 0xfd} {
		b := append([]byte{c}, make([]byte, 8)...)
		_, _, err := ParseVarint(b, Draft17)
		if CodeOf(err) != CodeProtocolViolation {
			t.Errorf("0x%02x: err %v, want PROTOCOL_VIOLATION", c, err)
		}
		for _, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b))} {
			if _, err := ReadVarint(r, Draft17); CodeOf(err) != CodeProtocolViolation {
				t.Errorf("ReadVarint(%T) 0x%02x: err %v", r, c, err)
			}
		}
	}
}

func TestVarintEncoderNeverEmitsSevenByteForm(t *testing.T) {
	for _, x := range []uint64{1 << 42, 1<<49 - 1, 1 << 49, 1<<56 - 1} {
		b := AppendVarint(nil, Draft17, x)
		if len(b) != 8 || b[0] != 0xfe {
			t.Errorf("%d encoded as %x, want the 8-byte form", x, b)
		}
	}
}

func TestVarintRoundTripAtBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range Supported {
		var xs []uint64
		for bit := 0; bit < 64; bit++ {
			xs = append(xs, 1<<bit-1, 1<<bit, 1<<bit+1)
		}
		for range 2000 {
			xs = append(xs, rng.Uint64()>>rng.IntN(64))
		}
		for _, x := range xs {
			if x > MaxVarint(v) {
				continue
			}
			b := AppendVarint([]byte{0xaa}, v, x)[1:]
			if len(b) != VarintLen(v, x) {
				t.Fatalf("%s %d: %d bytes, VarintLen says %d", v, x, len(b), VarintLen(v, x))
			}
			got, n, err := ParseVarint(b, v)
			if err != nil || got != x || n != len(b) {
				t.Fatalf("%s %d: round trip %d (%d bytes) %v", v, x, got, n, err)
			}
		}
	}
}

func TestVarintDraft16PanicsAboveMax(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for 2^62 in draft 16")
		}
	}()
	AppendVarint(nil, Draft16, 1<<62)
}

func TestReadVarintTruncation(t *testing.T) {
	if _, err := ReadVarint(bytes.NewReader(nil), Draft17); err != io.EOF {
		t.Errorf("empty: %v, want io.EOF", err)
	}
	if _, err := ReadVarint(bytes.NewReader([]byte{0xc0, 1}), Draft17); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("partial: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := ParseVarint([]byte{0x80}, Draft16); CodeOf(err) != CodeProtocolViolation {
		t.Errorf("partial parse: %v", err)
	}
}

func FuzzVarint(f *testing.F) {
	for _, tc := range varintVectors {
		f.Add(unhex(f, tc.hex), uint8(slices.Index(Supported, tc.v)))
	}
	f.Add([]byte{0xfc, 1, 2, 3, 4, 5, 6}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, pick uint8) {
		v := Supported[int(pick)%len(Supported)]
		x, n, err := ParseVarint(b, v)
		if err != nil {
			return
		}
		// Decoding then re-encoding must give the same value, never longer
		// (but for a 7-byte form, which the encoder replaces with 8 bytes).
		out := AppendVarint(nil, v, x)
		if len(out) > n && n != 7 {
			t.Fatalf("%x → %d re-encodes longer: %x", b[:n], x, out)
		}
		if y, _, err := ParseVarint(out, v); err != nil || y != x {
			t.Fatalf("re-encoded %x → %d, %v", out, y, err)
		}
	})
}
