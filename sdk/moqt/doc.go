// Package moqt is the wire format of Media over QUIC Transport (IETF
// draft-ietf-moq-transport): variable-length integers, control messages, data
// stream headers and objects, and moq-dev's "hang" media format (catalog.json and
// timestamped frames). It holds no session state and opens no streams: a session
// layer reads bytes from QUIC or WebTransport streams and hands them here.
//
// Every encoder and decoder takes the negotiated [Version], because the drafts
// differ in integer encoding and message layout; see RATIONALE.md for the versions
// supported and why. Decoders validate everything they read (lengths, counts,
// reserved code points) and report malformed input as a *[ProtocolError] that
// carries the termination code a session answers with.
//
// The package imports only the standard library so that the gateway and Go push
// clients under sdk/ can both use it.
package moqt
