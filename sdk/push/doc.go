// Package push is the Go client that pushes a live stream to a media server
// over Media over QUIC Transport (IETF MoQT, drafts 16, 17 and 19 as package
// [moqt] encodes them), in moq-dev's "hang" media format ([hang]): a catalog.json
// track describing the media tracks, and one object per frame, each group of
// objects starting at a keyframe.
//
// A program dials a server, publishes a broadcast under its stream id, and
// writes frames:
//
//	s, err := push.Dial(ctx, "moqt://127.0.0.1:4443/", &push.Options{CertSHA256: hash})
//	b, err := s.Publish(ctx, "cam1", push.Track{Codec: push.VP8, Width: 640, Height: 360})
//	err = b.WriteFrame("video", pts, keyframe, frame)
//	err = s.Close()
//
// Publish announces the broadcast (PUBLISH_NAMESPACE, the flow moq-dev's
// publishers use) and the server subscribes to the catalog and the tracks it
// wants; frames reach every subscriber of their track. WriteFrame never blocks
// on the network: each subscription has a bounded queue, and a subscriber that
// falls behind loses whole groups (see Options.MaxQueuedBytes).
//
// Errors that carry a MoQT code (a refused request, a session the server
// closed) give it to [moqt.CodeOf].
//
// Raw QUIC only (moqt:// URLs); WebTransport (https://) is not implemented.
//
// Dependencies: every other package under sdk/ imports only the standard library
// and sdk/...; this one also imports github.com/quic-go/quic-go, because a MoQT
// client needs a QUIC implementation and the standard library has none. It
// imports nothing of sluice's host side (gateway, agent, internal, wasm).
package push
