// Package moq is the gateway's Media over QUIC edge (IETF MoQT, the drafts in
// sdk/moqt): one UDP port serving raw QUIC and WebTransport, where encoders and
// browsers publish streams into the session core and viewers subscribe to them.
package moq
