package push

import (
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// Options configures Dial. The zero value (or a nil *Options) is valid:
// each field says what its zero value means.
type Options struct {
	// CertSHA256 pins the server's certificate: the hex SHA-256 of the leaf
	// certificate's DER, as moq-dev servers and `sluice dev` serve it at
	// /certificate.sha256 (an optional "0x" prefix and surrounding spaces are
	// ignored). When set, the chain is not verified. Empty: verify the chain
	// against RootCAs and the URL's host name.
	CertSHA256 string
	// RootCAs verifies the server's chain when CertSHA256 is empty. Nil: the
	// system roots.
	RootCAs *x509.CertPool
	// Token is sent as the AUTHORIZATION_TOKEN setup parameter and on every
	// PUBLISH_NAMESPACE (a USE_VALUE token of type 0, the drafts' "negotiated
	// out of band"). Empty: no token.
	Token string
	// Versions are the drafts offered as QUIC ALPNs, most preferred first; the
	// server picks one. Nil: moqt.Supported.
	Versions []moqt.Version
	// MaxQueuedBytes bounds the frames waiting to be sent to one subscriber.
	// When a new frame would exceed it, the oldest groups are dropped whole
	// (an unfinished one is reset) until it fits, and a track keeps at most
	// this much of its current group for subscribers that join mid-group.
	// Zero: 2 MiB (about 4 s of a 4 Mbit/s stream).
	MaxQueuedBytes int
	// AudioGroup is how long one group of an Opus track lasts: a packet this
	// long after its group's first starts the next group. Every Opus packet
	// can start one; a group per packet costs a QUIC stream per 20 ms at
	// both ends, and moq-dev's publisher groups audio by half seconds too.
	// A subscriber joining mid-group starts at its first packet, at most
	// this long ago. Zero: 500 ms; negative: a group per packet.
	AudioGroup time.Duration
	// CloseTimeout is how long Close waits for queued frames to be sent and
	// acknowledged before it resets what is left. Zero: 2 s.
	CloseTimeout time.Duration
	// HandshakeTimeout is how long Dial waits for the server to answer the
	// QUIC handshake and SETUP. Zero: 5 s. Dial's context can end it sooner.
	HandshakeTimeout time.Duration
	// Logger receives the session's events (subscriptions, dropped groups).
	// Nil: nothing is logged.
	Logger *slog.Logger
}

const (
	defaultMaxQueued        = 2 << 20
	defaultAudioGroup       = 500 * time.Millisecond
	defaultCloseTimeout     = 2 * time.Second
	defaultHandshakeTimeout = 5 * time.Second
	// implementation is the MOQT_IMPLEMENTATION setup parameter.
	implementation = "sluice-push"
	// controlLimit bounds a control message read from the server.
	controlLimit = 16 << 10
	// requestIDWindow is how many request ids (draft 16) the server may use
	// beyond the ones it has used; each SUBSCRIBE takes one.
	requestIDWindow = 1024
)

// withDefaults returns a copy with every zero field filled.
func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if len(c.Versions) == 0 {
		c.Versions = moqt.Supported
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = defaultMaxQueued
	}
	if c.AudioGroup == 0 {
		c.AudioGroup = defaultAudioGroup
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = defaultCloseTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = defaultHandshakeTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
