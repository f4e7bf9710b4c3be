// Package streamid validates stream ids, the routing key of every sluice session.
//
// A stream id is 1 to 128 bytes from [A-Za-z0-9._~-] (DESIGN.md). Anything else is
// refused before any work is done, so ids are safe in URL paths, serf tags, file
// names and log lines without further escaping.
package streamid

import (
	"errors"
	"fmt"
)

// MaxLen is the longest allowed stream id, in bytes.
const MaxLen = 128

// HeaderDefault is the default header that carries a stream id on API calls.
const HeaderDefault = "X-Stream-Id"

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("invalid stream id")

// Validate reports why id is not a valid stream id, or nil.
func Validate(id string) error {
	if len(id) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(id) > MaxLen {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalid, len(id), MaxLen)
	}
	for i := 0; i < len(id); i++ {
		if !allowed(id[i]) {
			return fmt.Errorf("%w: byte %d (%q) is outside [A-Za-z0-9._~-]", ErrInvalid, i, id[i])
		}
	}
	return nil
}

func allowed(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '~', c == '-':
		return true
	}
	return false
}
