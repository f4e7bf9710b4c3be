package moq

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// rtpMTU bounds the RTP packets a frame becomes: below the media link's path
// MTU with room for its framing, as WHIP publishers' packets are.
const rtpMTU = 1200

// codecInfo is how one catalog codec travels as RTP.
type codecInfo struct {
	kind, mime, fmtp string
	clock            uint32
	channels         uint16
	pt               uint8
	payloader        func() rtp.Payloader
}

// rtpCodec maps a hang rendition's WebCodecs codec string to RTP, or
// reports why it cannot: VP8, H.264 (Annex B, no avcC description) and Opus
// are what WHEP viewers negotiate.
func rtpCodec(codec, description string) (codecInfo, error) {
	switch {
	case codec == "vp8":
		return codecInfo{kind: "video", mime: "video/VP8", clock: 90000, pt: 96,
			payloader: func() rtp.Payloader { return &codecs.VP8Payloader{EnablePictureID: true} }}, nil
	case strings.HasPrefix(codec, "avc1.") || strings.HasPrefix(codec, "avc3."):
		pli := strings.ToLower(codec[5:])
		if len(pli) != 6 || strings.Trim(pli, "0123456789abcdef") != "" {
			return codecInfo{}, fmt.Errorf("H.264 codec string %q has no profile-level-id", codec)
		}
		if description != "" {
			// An avcC description means length-prefixed (AVCC) frames with the
			// parameter sets out of band; @moq/publish sends Annex B.
			return codecInfo{}, fmt.Errorf("H.264 with an avcC description (AVCC frames) is not supported")
		}
		return codecInfo{kind: "video", mime: "video/H264", clock: 90000, pt: 102,
			fmtp:      "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + pli,
			payloader: func() rtp.Payloader { return &codecs.H264Payloader{} }}, nil
	case codec == "opus":
		// RTP Opus is always opus/48000/2 (RFC 7587), whatever the channels.
		return codecInfo{kind: "audio", mime: "audio/opus", clock: 48000, channels: 2, pt: 111,
			fmtp: "minptime=10;useinbandfec=1", payloader: func() rtp.Payloader { return &codecs.OpusPayloader{} }}, nil
	}
	return codecInfo{}, fmt.Errorf("codec %q is not carried as RTP here (VP8, H.264 and Opus are)", codec)
}

// rtpTrack turns one hang track's frames into RTP packets for a Publication
// track: pion's payloaders, a random SSRC and sequence start, and timestamps
// from the frames' microsecond timestamps at the codec's clock rate.
type rtpTrack struct {
	index uint8
	codec string // the catalog's codec string, to tell a changed rendition
	info  codecInfo
	write func(track uint8, framed []byte) // keeps no framed: frame reuses it

	mu        sync.Mutex
	payloader rtp.Payloader
	seq       rtp.Sequencer
	ssrc      uint32
	tsOffset  uint32
	baseUs    uint64
	based     bool
	group     uint64         // the group being written
	inGroup   bool           // a group's keyframe has been written: its later frames may follow
	groupDone bool           // the stream of the group being written has ended: all its frames are in
	turn      chan struct{}  // closed when a new group starts or a waiting one leaves
	waiting   map[uint64]int // groups whose first frame waits in awaitTurn
	framed    []byte         // the packet being written; write keeps none
}

// groupHold is how long a group's first frame waits for the groups before it:
// each group is a stream of its own, and streams that arrive together are
// read by goroutines that race. hang numbers a track's groups consecutively.
const groupHold = 100 * time.Millisecond

// awaitTurn holds the first frame of group until it is the lowest group
// waiting and the group before it has been written to its end (its stream
// ended), or hold has passed (or ctx ends), so racing group streams are
// written in order instead of the late ones being dropped. A publisher ends a
// group's stream after its last frame, before it opens the next one's, so in
// order nothing waits; without the wait, the last frame of a group read a
// moment after the next group's first was dropped (50 pushes at once lost
// 0.01% of their frames so).
func (t *rtpTrack) awaitTurn(ctx context.Context, group uint64, hold time.Duration) {
	t.mu.Lock()
	t.waiting[group]++
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.waiting[group]--; t.waiting[group] <= 0 {
			delete(t.waiting, group)
		}
		t.kickLocked()
		t.mu.Unlock()
	}()
	timer := time.NewTimer(hold)
	defer timer.Stop()
	expired := timer.C
	for {
		t.mu.Lock()
		next := t.inGroup && (group <= t.group || group == t.group+1 && t.groupDone)
		lowest := true
		for g := range t.waiting {
			lowest = lowest && g >= group
		}
		ch := t.turn
		t.mu.Unlock()
		if lowest && (next || expired == nil) {
			return
		}
		select {
		case <-ch:
		case <-expired:
			expired = nil
		case <-ctx.Done():
			return
		}
	}
}

// groupEnded says the stream of group has ended: every frame of it has been
// given to frame. The next group's first frame may go.
func (t *rtpTrack) groupEnded(group uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inGroup && group == t.group && !t.groupDone {
		t.groupDone = true
		t.kickLocked()
	}
}

// kickLocked wakes the frames waiting in awaitTurn; t.mu is held.
func (t *rtpTrack) kickLocked() {
	close(t.turn)
	t.turn = make(chan struct{})
}

func newRTPTrack(index uint8, codec string, info codecInfo, write func(uint8, []byte)) *rtpTrack {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &rtpTrack{index: index, codec: codec, info: info, write: write, payloader: info.payloader(),
		turn: make(chan struct{}), waiting: map[uint64]int{}, seq: rtp.NewRandomSequencer(),
		ssrc: binary.BigEndian.Uint32(b[:4]), tsOffset: binary.BigEndian.Uint32(b[4:])}
}

// track is the medialink announcement of the RTP track.
func (t *rtpTrack) track() medialink.Track {
	return medialink.Track{Index: t.index, Kind: t.info.kind, MimeType: t.info.mime, ClockRate: t.info.clock,
		Channels: t.info.channels, SDPFmtpLine: t.info.fmtp, PayloadType: t.info.pt, SSRC: t.ssrc}
}

// frame packetizes one hang frame of group and writes its packets. A group
// starts with a keyframe (objectID 0); frames of a group older than the one
// being written, and frames before the first keyframe, are dropped, so the
// RTP sequence follows the media order even when groups' streams race.
func (t *rtpTrack) frame(group, objectID uint64, f hang.Frame) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.inGroup && group < t.group, !t.inGroup && objectID != 0, group > t.group && objectID != 0, group == t.group && t.inGroup && objectID == 0:
		return false
	}
	if objectID == 0 {
		t.kickLocked()
		t.groupDone = false
	}
	t.group, t.inGroup = group, true
	if !t.based {
		t.baseUs, t.based = f.TimestampMicros, true
	}
	// Signed microseconds from the first frame, so a timestamp before it
	// (B-frames, a restarted encoder) maps below the offset instead of wrapping.
	d := int64(f.TimestampMicros - t.baseUs)
	ts := t.tsOffset + uint32(d*int64(t.info.clock)/1_000_000)
	payloads := t.payloader.Payload(rtpMTU, f.Payload)
	for i, p := range payloads {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: t.info.pt, SequenceNumber: t.seq.NextSequenceNumber(),
			Timestamp: ts, SSRC: t.ssrc, Marker: t.info.kind == "video" && i == len(payloads)-1}, Payload: p}
		n := 1 + pkt.MarshalSize()
		if cap(t.framed) < n {
			t.framed = make([]byte, n, max(n, 1+12+rtpMTU))
		}
		buf := t.framed[:n]
		if _, err := pkt.MarshalTo(buf[1:]); err != nil {
			return false
		}
		t.write(t.index, buf)
	}
	return len(payloads) > 0
}
