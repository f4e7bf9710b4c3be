// Package transport is the MoQ endpoint's transport: one UDP port serving raw
// QUIC (an ALPN per MoQT draft) and WebTransport over HTTP/3, one Conn
// interface over both, and a rotating self-signed certificate whose hash
// browsers pin (served at /certificate.sha256).
package transport
