package wire

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/internal/streamid"
)

// ALPNTunnel is the ALPN protocol a gateway asks for on the agent API's
// mutual-TLS port to open a proxy tunnel instead of an HTTP connection: after
// the handshake the gateway sends a TunnelOpen line, the agent answers a
// TunnelAnswer line, and on 200 the connection carries the bytes of one
// service connection both ways, spliced by the agent, until either side
// closes it. The agent closes the tunnels of a stream that leaves it.
const ALPNTunnel = "sluice-tunnel/1"

// The protocols a tunnel's caller speaks to the service through it.
const (
	TunnelH1  = "h1"  // HTTP/1.1 (and its upgrades: WebSocket)
	TunnelH2C = "h2c" // HTTP/2 without TLS, prior knowledge (gRPC)
)

// MaxTunnelLine bounds a TunnelOpen or TunnelAnswer line, its newline
// included: two names of at most 128 bytes and a protocol fit with room.
const MaxTunnelLine = 300

// TunnelOpen is the line that opens a tunnel: "SERVICE STREAM PROTO\n". The
// service and the stream are names of [A-Za-z0-9._~-], 1–128 bytes; PROTO is
// TunnelH1 or TunnelH2C.
type TunnelOpen struct {
	Service, Stream, Proto string
}

// Line is o as it goes on the wire.
func (o TunnelOpen) Line() []byte {
	return []byte(o.Service + " " + o.Stream + " " + o.Proto + "\n")
}

// ErrTunnelLine is the error of a tunnel line that is not one.
var ErrTunnelLine = errors.New("wire: not a tunnel line")

// ParseTunnelOpen reads a TunnelOpen line (with its newline).
func ParseTunnelOpen(line []byte) (TunnelOpen, error) {
	f, err := tunnelFields(line)
	if err != nil {
		return TunnelOpen{}, err
	}
	if len(f) != 3 {
		return TunnelOpen{}, fmt.Errorf("%w: %d fields, want 3", ErrTunnelLine, len(f))
	}
	o := TunnelOpen{Service: f[0], Stream: f[1], Proto: f[2]}
	if err := streamid.Validate(o.Service); err != nil {
		return TunnelOpen{}, fmt.Errorf("%w: service: %w", ErrTunnelLine, err)
	}
	if err := streamid.Validate(o.Stream); err != nil {
		return TunnelOpen{}, fmt.Errorf("%w: stream: %w", ErrTunnelLine, err)
	}
	if o.Proto != TunnelH1 && o.Proto != TunnelH2C {
		return TunnelOpen{}, fmt.Errorf("%w: protocol %q (want %s or %s)", ErrTunnelLine, o.Proto, TunnelH1, TunnelH2C)
	}
	return o, nil
}

// TunnelAnswer is the agent's answer to a TunnelOpen: "STATUS WORD\n". Status
// 200 (word "ok") means the tunnel is open; any other status closes it, with
// the HTTP status the gateway would answer for it and a word of [a-z0-9-]:
//
//	400 bad-open         the open line was not one
//	404 no-service       the agent has no such service
//	421 stream-not-here  the stream is not on this agent (any more)
//	502 service-down     the agent could not reach the service
//	503 shutting-down    the agent is stopping
//	505 h1 | h2c         the service does not speak the protocol asked; the
//	                     word is the one it speaks
type TunnelAnswer struct {
	Status int
	Word   string
}

// Line is a as it goes on the wire.
func (a TunnelAnswer) Line() []byte {
	return []byte(strconv.Itoa(a.Status) + " " + a.Word + "\n")
}

// ParseTunnelAnswer reads a TunnelAnswer line (with its newline).
func ParseTunnelAnswer(line []byte) (TunnelAnswer, error) {
	f, err := tunnelFields(line)
	if err != nil {
		return TunnelAnswer{}, err
	}
	if len(f) != 2 || len(f[0]) != 3 || len(f[1]) > 64 {
		return TunnelAnswer{}, fmt.Errorf("%w: %q", ErrTunnelLine, line)
	}
	status, err := strconv.Atoi(f[0])
	if err != nil || status < 100 || status > 599 || f[0][0] == '+' || f[0][0] == '-' {
		return TunnelAnswer{}, fmt.Errorf("%w: status %q", ErrTunnelLine, f[0])
	}
	for i := range len(f[1]) {
		if c := f[1][i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return TunnelAnswer{}, fmt.Errorf("%w: word %q", ErrTunnelLine, f[1])
		}
	}
	return TunnelAnswer{Status: status, Word: f[1]}, nil
}

// tunnelFields splits a tunnel line into its fields: three for an open, two
// for an answer, each non-empty, one space apart, the line ending in "\n".
func tunnelFields(line []byte) ([]string, error) {
	s, ok := strings.CutSuffix(string(line), "\n")
	if !ok || len(line) > MaxTunnelLine {
		return nil, fmt.Errorf("%w: no newline within %d bytes", ErrTunnelLine, MaxTunnelLine)
	}
	f := strings.Split(s, " ")
	if len(f) < 2 || len(f) > 3 {
		return nil, fmt.Errorf("%w: %d fields", ErrTunnelLine, len(f))
	}
	for _, x := range f {
		if x == "" {
			return nil, fmt.Errorf("%w: an empty field", ErrTunnelLine)
		}
	}
	return f, nil
}

// ReadTunnelLine reads one tunnel line from r, up to and with its newline, a
// byte at a time: nothing after the line is consumed, so the connection's
// next bytes are the tunnel's. It fails on a line longer than MaxTunnelLine.
func ReadTunnelLine(r io.Reader) ([]byte, error) {
	line := make([]byte, 0, 64)
	var b [1]byte
	for len(line) < MaxTunnelLine {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("wire: reading a tunnel line: %w", err)
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			return line, nil
		}
	}
	return nil, fmt.Errorf("%w: no newline within %d bytes", ErrTunnelLine, MaxTunnelLine)
}
