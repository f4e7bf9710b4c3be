package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/internal/streamid"
)

// Action is what a token may do on a stream.
type Action string

// The actions a grant names.
const (
	Publish Action = "publish"
	Play    Action = "play"
	Proxy   Action = "proxy" // HTTP and gRPC calls through the edge proxy that name the stream
)

// The roles a token may carry for the /v1 API.
const (
	// RoleAdmin may do everything the static API token may.
	RoleAdmin = "admin"
	// RoleRead may only GET.
	RoleRead = "read"
)

// Claims are a verified token's: the registered claims and sluice's own.
type Claims struct {
	jwt.RegisteredClaims
	// Grants say which actions the token allows on which streams.
	Grants []Grant `json:"grants,omitempty"`
	// Role is the token's /v1 API role: RoleAdmin, RoleRead or none.
	Role string `json:"role,omitempty"`
	// Tenant names whom the token was issued to, for policies (quotas).
	Tenant string `json:"tenant,omitempty"`
	// Limits bound what the token's sessions may use.
	Limits Limits `json:"limits,omitzero"`
}

// Grant allows actions on the streams its patterns match.
type Grant struct {
	// Streams are stream ids or patterns in which "*" matches any run of
	// stream id characters ("cam-*", "*").
	Streams []string `json:"streams"`
	// Allow are the actions granted.
	Allow []Action `json:"allow"`
}

// Limits are what the gateway enforces for a token. Zero means no limit.
type Limits struct {
	// MaxViewers: a publish token's stream takes at most this many viewers
	// on a gateway; a play token is refused when the stream already has
	// this many.
	MaxViewers int `json:"maxViewers,omitempty"`
	// MaxBitrate, in bits per second: a publisher whose stream runs above it
	// for several seconds is ended.
	MaxBitrate int64 `json:"maxBitrate,omitempty"`
}

// Allows reports whether the claims grant action on stream.
func (c *Claims) Allows(action Action, stream string) bool {
	for _, g := range c.Grants {
		if !slices.Contains(g.Allow, action) {
			continue
		}
		for _, p := range g.Streams {
			if Match(p, stream) {
				return true
			}
		}
	}
	return false
}

// Match reports whether stream matches pattern, in which "*" stands for any
// run (also empty) of characters and every other byte for itself.
func Match(pattern, stream string) bool {
	// Iterative glob with one backtrack point: linear in practice, never
	// exponential on hostile patterns.
	p, s, starP, starS := 0, 0, -1, 0
	for s < len(stream) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			starP, starS = p, s
			p++
		case p < len(pattern) && pattern[p] == stream[s]:
			p++
			s++
		case starP >= 0:
			starS++
			p, s = starP+1, starS
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ValidPattern reports why pattern cannot match any stream id, or nil.
func ValidPattern(pattern string) error {
	if pattern == "*" {
		return nil
	}
	if err := streamid.Validate(strings.ReplaceAll(pattern, "*", "x")); err != nil {
		return fmt.Errorf("stream pattern %q: %w", pattern, err)
	}
	return nil
}

// ParseAction names an action, or reports that it is none.
func ParseAction(s string) (Action, error) {
	switch a := Action(strings.TrimSpace(s)); a {
	case Publish, Play, Proxy:
		return a, nil
	}
	return "", fmt.Errorf("action %q: want publish, play or proxy", s)
}
