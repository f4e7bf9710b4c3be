// Package moq is the gateway's Media over QUIC edge (IETF MoQT, the drafts in
// sdk/moqt): one UDP port serving raw QUIC and WebTransport, where encoders and
// browsers publish streams into the session core. A Server runs one session per
// connection: SETUP as the negotiated draft lays it out, the announce flow
// (PUBLISH_NAMESPACE, then we subscribe to the hang catalog and its tracks) and
// the PUBLISH flow, admission and placement as for WHIP, and hang frames
// packetized to RTP into the stream's Publication. RATIONALE.md says why.
package moq
