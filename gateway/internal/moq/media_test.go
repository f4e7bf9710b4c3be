package moq

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// capture is a Publication as an rtpTrack sees it: it keeps the packets.
type capture struct {
	mu   sync.Mutex
	pkts []*rtp.Packet
}

func (c *capture) write(_ uint8, framed []byte) {
	var p rtp.Packet
	// framed is the track's buffer, reused for its next packet; Unmarshal
	// keeps the payload in place, so the capture keeps a copy.
	if err := p.Unmarshal(bytes.Clone(framed[1:])); err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.pkts = append(c.pkts, &p)
	c.mu.Unlock()
}

func mustCodec(t testing.TB, codec string) codecInfo {
	t.Helper()
	info, err := rtpCodec(codec, "")
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Frames packetized with pion's payloaders come back byte for byte from
// pion's depacketizers, with RTP timestamps at the codec's clock from the
// frames' microseconds, and one marker per video frame.
func TestFramesBecomeRTPThatDepacketizesToTheSameFramesAtTheirTimestamps(t *testing.T) {
	video, err := mediatest.LoadIVF("../../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := mediatest.LoadOgg("../../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		codec  string
		frames [][]byte
		step   uint64 // µs between frames
		dep    rtp.Depacketizer
	}{
		{"vp8", video[:90], 33_333, &codecs.VP8Packet{}},
		{"opus", audio[:150], 20_000, &codecs.OpusPacket{}},
	} {
		var got capture
		tr := newRTPTrack(0, c.codec, mustCodec(t, c.codec), got.write)
		for i, f := range c.frames {
			key := c.codec == "opus" || f[0]&1 == 0
			group := uint64(i)
			if c.codec == "vp8" && !key {
				group = tr.group
			}
			obj := uint64(0)
			if !key {
				obj = uint64(i) // within the group: not a first object
			}
			if !tr.frame(group, obj, hang.Frame{TimestampMicros: 5_000_000 + uint64(i)*c.step, Payload: f}) {
				t.Fatalf("%s frame %d refused", c.codec, i)
			}
		}
		clock := tr.info.clock
		sb := samplebuilder.New(256, c.dep, clock)
		var out [][]byte
		markers := 0
		for i, p := range got.pkts {
			if i > 0 && p.SequenceNumber != got.pkts[i-1].SequenceNumber+1 {
				t.Fatalf("%s: sequence %d after %d", c.codec, p.SequenceNumber, got.pkts[i-1].SequenceNumber)
			}
			if p.Marker {
				markers++
			}
			sb.Push(p)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				out = append(out, s.Data)
			}
		}
		if n, err := mediatest.Match(c.frames, out); err != nil || n < len(c.frames)-1 {
			// The sample builder holds the last frame until a later one comes.
			t.Errorf("%s: %d of %d frames came back (%v)", c.codec, n, len(c.frames), err)
		}
		if c.codec == "vp8" && markers != len(c.frames) {
			t.Errorf("vp8: %d markers for %d frames", markers, len(c.frames))
		}
		last := got.pkts[len(got.pkts)-1]
		span := uint64(len(c.frames)-1) * c.step
		if want := got.pkts[0].Timestamp + uint32(span*uint64(clock)/1_000_000); last.Timestamp != want {
			t.Errorf("%s: last timestamp %d, want %d (%d µs at %d Hz)", c.codec, last.Timestamp, want, span, clock)
		}
	}
}

// An H.264 access unit in Annex B (as @moq/publish sends it) crosses as
// packetization-mode 1 RTP and depacketizes to the same NAL units.
func TestAnAnnexBAccessUnitComesBackNALForNAL(t *testing.T) {
	sps := []byte{0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78}
	pps := []byte{0x68, 0xeb, 0xe3, 0xcb}
	idr := append([]byte{0x65}, bytes.Repeat([]byte{0x88, 0x84}, 3000)...) // FU-A: over the MTU
	sc := []byte{0, 0, 0, 1}
	au := bytes.Join([][]byte{nil, sps, pps, idr}, sc)
	var got capture
	tr := newRTPTrack(1, "avc1.640028", mustCodec(t, "avc1.640028"), got.write)
	if !tr.frame(0, 0, hang.Frame{TimestampMicros: 0, Payload: au}) {
		t.Fatal("refused")
	}
	if len(got.pkts) < 3 {
		t.Fatalf("%d packets for a 6 KB IDR", len(got.pkts))
	}
	var dep codecs.H264Packet
	var out []byte
	for _, p := range got.pkts {
		b, err := dep.Unmarshal(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	nals := bytes.Split(out, sc)[1:]
	if len(nals) != 3 || !bytes.Equal(nals[0], sps) || !bytes.Equal(nals[1], pps) || !bytes.Equal(nals[2], idr) {
		t.Fatalf("depacketized %d NAL units, want SPS, PPS and the IDR", len(nals))
	}
}

// The catalog's codec string decides the RTP codec a WHEP viewer negotiates.
func TestCatalogCodecsMapToNegotiableRTPCodecs(t *testing.T) {
	h := mustCodec(t, "avc1.640028")
	if h.mime != "video/H264" || h.clock != 90000 || !strings.Contains(h.fmtp, "packetization-mode=1") || !strings.Contains(h.fmtp, "profile-level-id=640028") {
		t.Errorf("avc1.640028 → %+v", h)
	}
	if o := mustCodec(t, "opus"); o.mime != "audio/opus" || o.clock != 48000 || o.channels != 2 {
		t.Errorf("opus → %+v", o)
	}
	for _, bad := range []string{"avc1.64002", "avc1.64002g", "av01.0.08M.08", "mp4a.40.2", "vp09.00.10.08"} {
		if _, err := rtpCodec(bad, ""); err == nil {
			t.Errorf("%q maps to RTP", bad)
		}
	}
	if _, err := rtpCodec("avc1.640028", "0164002a"); err == nil {
		t.Error("H.264 with an avcC description (AVCC frames) maps to RTP")
	}
	picks := pickRenditions(&hang.Catalog{
		Video: &hang.VideoSection{Renditions: map[string]hang.VideoConfig{
			"video/sd": {Codec: "vp8", CodedWidth: 320, CodedHeight: 180},
			"video/hd": {Codec: "avc1.42e01f", CodedWidth: 1280, CodedHeight: 720},
			"video/av": {Codec: "av01.0.08M.08", CodedWidth: 3840, CodedHeight: 2160},
		}},
		Audio: &hang.AudioSection{Renditions: map[string]hang.AudioConfig{"audio/data": {Codec: "opus", SampleRate: 48000, NumberOfChannels: 1}}},
	})
	if len(picks) != 2 || picks["video/hd"].codec == "" || picks["audio/data"].codec == "" {
		t.Errorf("picked %v, want the largest carried video (video/hd) and the audio", picks)
	}
}

// Groups whose streams race are written in group order: a later group's
// first frame waits for the earlier ones, and a group older than the one
// being written is dropped.
func TestRacingGroupsAreWrittenInOrder(t *testing.T) {
	var got capture
	tr := newRTPTrack(0, "opus", mustCodec(t, "opus"), got.write)
	tr.frame(0, 0, hang.Frame{TimestampMicros: 0, Payload: []byte{0xfc, 0}})
	tr.groupEnded(0)
	var wg sync.WaitGroup
	for g := uint64(5); g >= 1; g-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.awaitTurn(context.Background(), g, time.Minute)
			tr.frame(g, 0, hang.Frame{TimestampMicros: g * 20_000, Payload: []byte{0xfc, byte(g)}})
			tr.groupEnded(g)
		}()
		time.Sleep(5 * time.Millisecond) // the later groups arrive first
	}
	wg.Wait()
	if tr.frame(2, 0, hang.Frame{TimestampMicros: 40_000, Payload: []byte{0xfc, 2}}) {
		t.Error("a group older than the current one was written")
	}
	got.inOrder(t, 6)
}

// inOrder checks that the n packets captured carry 0, 1, … in their second
// payload byte: the frames (or groups) in the order they were made.
func (c *capture) inOrder(t *testing.T, n int) {
	t.Helper()
	for i, p := range c.pkts {
		if int(p.Payload[1]) != i {
			t.Fatalf("packet %d carries frame %d, want the frames in order", i, p.Payload[1])
		}
	}
	if len(c.pkts) != n {
		t.Fatalf("%d packets, want %d", len(c.pkts), n)
	}
}

// The last frame of a group, read a moment after the next group's first (the
// two groups' streams are read by goroutines that race), is still written,
// before the next group: the next group waits for the stream of the one
// before it to end. Without the wait that frame was dropped.
func TestAGroupsLastFrameReadAfterTheNextGroupsFirstIsWrittenBeforeIt(t *testing.T) {
	var got capture
	tr := newRTPTrack(0, "opus", mustCodec(t, "opus"), got.write)
	if !tr.frame(0, 0, hang.Frame{TimestampMicros: 0, Payload: []byte{0xfc, 0}}) {
		t.Fatal("the first group's first frame was refused")
	}
	next := make(chan bool)
	go func() {
		tr.awaitTurn(context.Background(), 1, time.Minute)
		next <- tr.frame(1, 0, hang.Frame{TimestampMicros: 40_000, Payload: []byte{0xfc, 2}})
	}()
	select {
	case <-next:
		t.Fatal("the next group went before the group before it had ended")
	case <-time.After(50 * time.Millisecond):
	}
	if !tr.frame(0, 1, hang.Frame{TimestampMicros: 20_000, Payload: []byte{0xfc, 1}}) {
		t.Fatal("the first group's last frame was dropped")
	}
	tr.groupEnded(0)
	if !<-next {
		t.Fatal("the next group's first frame was refused")
	}
	got.inOrder(t, 3)
}

// BenchmarkFrameToRTP is the gateway's work per pushed video frame before the
// media link: packetize a 3,000-byte VP8 frame (three packets) and frame each
// for the node. Its allocations are pion's payloader's.
func BenchmarkFrameToRTP(b *testing.B) {
	tr := newRTPTrack(0, "vp8", mustCodec(b, "vp8"), func(uint8, []byte) {})
	f := make([]byte, 3000)
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for i := range b.N {
		obj := uint64(i % 30)
		if !tr.frame(uint64(i/30), obj, hang.Frame{TimestampMicros: uint64(i) * 33_333, Payload: f}) {
			b.Fatal("frame refused")
		}
	}
}
