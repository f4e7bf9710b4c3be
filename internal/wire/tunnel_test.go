package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// An open line and an answer line go through the wire unchanged, and the
// reader stops at the newline: the tunnel's own bytes after it stay unread.
func TestTunnelLinesRoundTripAndStopAtTheirNewline(t *testing.T) {
	o := TunnelOpen{Service: "grpc", Stream: "cam-1.hd~x_y", Proto: TunnelH2C}
	a := TunnelAnswer{Status: 421, Word: "stream-not-here"}
	r := bytes.NewReader(append(append(o.Line(), a.Line()...), "PRI * HTTP/2.0"...))
	line, err := ReadTunnelLine(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseTunnelOpen(line); err != nil || got != o {
		t.Fatalf("open %q parsed as %+v, %v", line, got, err)
	}
	if line, err = ReadTunnelLine(r); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseTunnelAnswer(line); err != nil || got != a {
		t.Fatalf("answer %q parsed as %+v, %v", line, got, err)
	}
	if r.Len() != len("PRI * HTTP/2.0") {
		t.Fatalf("the reader took %d bytes past the lines", len("PRI * HTTP/2.0")-r.Len())
	}
}

// Lines that are not tunnel lines are refused, and a line with no newline is
// not read past MaxTunnelLine.
func TestTunnelLinesThatAreNotOnesAreRefused(t *testing.T) {
	for _, s := range []string{
		"default cam-1 h1",                   // no newline
		"default cam-1\n",                    // two fields
		"default cam-1 h1 x\n",               // four
		"default  cam-1 h1\n",                // an empty field
		"default ../x h1\n",                  // not a stream id
		"de fault cam-1 h1\n",                // four again
		"default cam-1 h2\n",                 // no such protocol
		"default cam-1 h1\r\n",               // CR is not the protocol's
		strings.Repeat("x", 129) + " a h1\n", // a service name too long
	} {
		if _, err := ParseTunnelOpen([]byte(s)); !errors.Is(err, ErrTunnelLine) {
			t.Fatalf("open %q: %v, want ErrTunnelLine", s, err)
		}
	}
	for _, s := range []string{"200\n", "200 ok x\n", "20 ok\n", "+20 ok\n", "600 ok\n", "200 OK\n", "200 o k\n", "099 ok\n"} {
		if _, err := ParseTunnelAnswer([]byte(s)); !errors.Is(err, ErrTunnelLine) {
			t.Fatalf("answer %q: %v, want ErrTunnelLine", s, err)
		}
	}
	r := strings.NewReader(strings.Repeat("x", 10*MaxTunnelLine))
	if _, err := ReadTunnelLine(r); !errors.Is(err, ErrTunnelLine) {
		t.Fatalf("an endless line: %v, want ErrTunnelLine", err)
	}
	if read := 10*MaxTunnelLine - r.Len(); read != MaxTunnelLine {
		t.Fatalf("an endless line was read for %d bytes, want %d", read, MaxTunnelLine)
	}
}

// Whatever a peer sends, the parsers either refuse it or accept exactly what
// encodes back to it.
func FuzzParseTunnelOpen(f *testing.F) {
	for _, s := range []string{"default cam-1 h1\n", "grpc a.b~c_d-e h2c\n", "x y h3\n", "a b\n", " \n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		o, err := ParseTunnelOpen(line)
		if err != nil {
			return
		}
		if !bytes.Equal(o.Line(), line) {
			t.Fatalf("%q parsed as %+v, which encodes as %q", line, o, o.Line())
		}
	})
}

func FuzzParseTunnelAnswer(f *testing.F) {
	for _, s := range []string{"200 ok\n", "421 stream-not-here\n", "505 h2c\n", "-99 x\n", "200 ok ok\n", "200\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		a, err := ParseTunnelAnswer(line)
		if err != nil {
			return
		}
		if !bytes.Equal(a.Line(), line) || a.Status < 100 || a.Status > 599 {
			t.Fatalf("%q parsed as %+v, which encodes as %q", line, a, a.Line())
		}
	})
}
