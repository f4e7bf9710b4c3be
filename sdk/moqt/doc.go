// Package moqt is the wire format of Media over QUIC Transport (IETF
// draft-ietf-moq-transport): variable-length integers, control messages, data
// stream headers and objects. Its subpackage hang is moq-dev's media format on
// top (catalog.json and timestamped frames). It holds no session state and opens
// no streams: a session
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
//
// A session layer reads a control stream with [ReadMessage], a unidirectional
// stream's first varint with [ReadVarint] (a SUBGROUP_HEADER type, see
// [IsSubgroupStream], or in draft 17+ [StreamTypeSetup]), the objects with
// [NewSubgroupReader], and datagrams with [ParseDatagram]; it answers a
// *[ProtocolError] by closing the session with its Code ([CodeOf]).
package moqt
