package egress

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// testSink is a sink with no subscription behind it, fed RTP by the test.
func testSink() *Sink {
	return New(Config{Stream: "cam1", Log: slog.New(slog.DiscardHandler)})
}

// testViewer is a viewer whose queue the test reads.
type testViewer struct {
	*Queue
	ended string
}

func (v *testViewer) End(reason string) { v.ended = reason }

func newViewer(_ *Sink, n int) *testViewer { return &testViewer{Queue: NewQueue(n)} }

func drain(v *testViewer) []Object {
	var out []Object
	for {
		select {
		case o := <-v.q:
			out = append(out, o)
		default:
			return out
		}
	}
}

// vp8Frames is a keyframe every 10 frames, each frame large enough to take
// several packets.
func vp8Frames(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		f := bytes.Repeat([]byte{byte(i)}, 3000+i)
		f[0] = 1 // inter frame
		if i%10 == 0 {
			f[0] = 0x10 // keyframe: the low bit clear
		}
		out[i] = f
	}
	return out
}

func packetize(frames [][]byte, clock, step uint32, pl rtp.Payloader) []*rtp.Packet {
	p := rtp.NewPacketizer(1200, 96, 1234, pl, rtp.NewFixedSequencer(65000), clock)
	var out []*rtp.Packet
	for _, f := range frames {
		out = append(out, p.Packetize(f, step)...)
	}
	return out
}

func TestRTPBecomesHangFramesGroupedFromKeyframeToKeyframe(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
	v := newViewer(k, 1000)
	if !k.Attach(v, "video") {
		t.Fatal("video is not served")
	}
	frames := vp8Frames(35)
	for _, p := range packetize(frames, 90000, 3000, &codecs.VP8Payloader{EnablePictureID: true}) {
		k.WriteRTP(0, p)
	}
	got := drain(v)
	if len(got) != len(frames) {
		t.Fatalf("%d objects for %d frames", len(got), len(frames))
	}
	for i, o := range got {
		f, err := hang.ParseFrame(o.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Payload, frames[i]) {
			t.Errorf("frame %d differs", i)
		}
		if want := uint64(i) * 3000 * 1_000_000 / 90000; f.TimestampMicros != want {
			t.Errorf("frame %d at %d µs, want %d", i, f.TimestampMicros, want)
		}
		if o.Group != uint64(i/10) || o.ID != uint64(i%10) {
			t.Errorf("frame %d is object %d of group %d, want %d of %d", i, o.ID, o.Group, i%10, i/10)
		}
	}
}

func TestALateJoinerGetsTheCurrentGroupFromItsKeyframeAtOnce(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
	frames := vp8Frames(25)
	pkts := packetize(frames, 90000, 3000, &codecs.VP8Payloader{EnablePictureID: true})
	late := newViewer(k, 1000)
	done := 0
	for _, p := range pkts {
		k.WriteRTP(0, p)
		if p.Marker {
			if done++; done == 23 { // mid-way through the third group
				k.Attach(late, "video")
			}
		}
	}
	got := drain(late)
	if len(got) == 0 {
		t.Fatal("the late joiner got nothing")
	}
	f, _ := hang.ParseFrame(got[0].Payload)
	if got[0].Group != 2 || got[0].ID != 0 || !bytes.Equal(f.Payload, frames[20]) {
		t.Errorf("the late joiner starts at object %d of group %d, want the keyframe opening group 2", got[0].ID, got[0].Group)
	}
	if len(got) != 5 {
		t.Errorf("the late joiner got %d frames, want the 5 of the current group", len(got))
	}
}

func TestASlowViewerDropsTheRestOfItsGroupWithoutHoldingAnother(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
	fast, slow := newViewer(k, 1000), newViewer(k, 3)
	k.Attach(fast, "video")
	k.Attach(slow, "video")
	frames := vp8Frames(20)
	pkts := packetize(frames, 90000, 3000, &codecs.VP8Payloader{EnablePictureID: true})
	var slowGot []Object
	markers := 0
	for _, p := range pkts {
		k.WriteRTP(0, p)
		if p.Marker {
			markers++
		}
		if markers >= 10 { // from group 1 on the slow viewer keeps up
			slowGot = append(slowGot, drain(slow)...)
		}
	}
	slowGot = append(slowGot, drain(slow)...)
	if n := len(drain(fast)); n != 20 {
		t.Errorf("the fast viewer got %d of 20 frames", n)
	}
	var want []Object
	for i := 0; i < 3; i++ { // what fit of group 0
		want = append(want, Object{Group: 0, ID: uint64(i)})
	}
	for i := 0; i < 10; i++ { // group 1, whole: the drop ended with group 0
		want = append(want, Object{Group: 1, ID: uint64(i)})
	}
	if len(slowGot) != len(want) {
		t.Fatalf("the slow viewer got %d objects, want %d (3 of group 0, all of group 1)", len(slowGot), len(want))
	}
	for i, o := range slowGot {
		if o.Group != want[i].Group || o.ID != want[i].ID {
			t.Errorf("slow object %d is %d/%d, want %d/%d", i, o.Group, o.ID, want[i].Group, want[i].ID)
		}
	}
}

func TestEveryOpusFrameIsAGroupAndTheCatalogNamesTheTracks(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/H264", ClockRate: 90000, SDPFmtpLine: "packetization-mode=1;profile-level-id=640028"})
	k.AddTrack(medialink.Track{Index: 1, Kind: "audio", MimeType: "audio/opus", ClockRate: 48000, Channels: 2})
	k.AddTrack(medialink.Track{Index: 2, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
	cat, err := hang.ParseCatalog(k.catalog.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if cat.Video.Renditions["video"].Codec != "avc1.640028" || cat.Video.Renditions["video2"].Codec != "vp8" ||
		cat.Audio.Renditions["audio"].Codec != "opus" || cat.Audio.Renditions["audio"].SampleRate != 48000 {
		t.Errorf("catalog %s", k.catalog.Payload)
	}
	a := newViewer(k, 100)
	k.Attach(a, "audio")
	var frames [][]byte
	for i := 0; i < 10; i++ {
		frames = append(frames, bytes.Repeat([]byte{byte(i + 1)}, 80))
	}
	for _, p := range packetize(frames, 48000, 960, &codecs.OpusPayloader{}) {
		k.WriteRTP(1, p)
	}
	got := drain(a)
	if len(got) != 10 {
		t.Fatalf("%d audio objects for 10 frames (every complete frame is released at once)", len(got))
	}
	for i, o := range got {
		if o.Group != uint64(i) || o.ID != 0 {
			t.Errorf("audio frame %d is object %d of group %d", i, o.ID, o.Group)
		}
	}
}

func TestAnH264AccessUnitComesOutAnnexBAndAnIDROpensAGroup(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/H264", ClockRate: 90000})
	v := newViewer(k, 100)
	k.Attach(v, "video")
	sps := []byte{0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f}
	pps := []byte{0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80}
	idr := append([]byte{0, 0, 0, 1, 0x65}, bytes.Repeat([]byte{7}, 3000)...)
	inter := append([]byte{0, 0, 0, 1, 0x41}, bytes.Repeat([]byte{9}, 500)...)
	key := append(append(append([]byte(nil), sps...), pps...), idr...)
	for _, p := range packetize([][]byte{inter, key, inter, inter}, 90000, 3000, &codecs.H264Payloader{}) {
		k.WriteRTP(0, p)
	}
	got := drain(v)
	// The inter frame before the first IDR is dropped; the last waits for
	// the next packet.
	if len(got) != 2 {
		t.Fatalf("%d objects, want 2", len(got))
	}
	f, _ := hang.ParseFrame(got[0].Payload)
	for _, nal := range [][]byte{{0x67, 0x42}, {0x68, 0xce}, {0x65, 7, 7}} {
		if !bytes.Contains(f.Payload, append([]byte{0, 0, 1}, nal...)) {
			t.Errorf("the keyframe lacks NAL % x in Annex B", nal)
		}
	}
	if got[0].ID != 0 || got[1].ID != 1 || got[1].Group != got[0].Group || !bytes.Equal(got[1].Payload[len(got[1].Payload)-len(inter):], inter) {
		t.Errorf("objects %d, %d of groups %d, %d, want the IDR and the inter frame after it in one group", got[0].ID, got[1].ID, got[0].Group, got[1].Group)
	}
}

func TestALostPacketEndsTheGroupUntilTheNextKeyframe(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
	v := newViewer(k, 1000)
	k.Attach(v, "video")
	frames := vp8Frames(80)
	pkts := packetize(frames, 90000, 3000, &codecs.VP8Payloader{EnablePictureID: true})
	lost := len(pkts) / 16 // inside group 0 or 1
	for i, p := range pkts {
		if i != lost {
			k.WriteRTP(0, p)
		}
	}
	got := drain(v)
	seenGap := false
	for i := 1; i < len(got); i++ {
		prev, o := got[i-1], got[i]
		if o.Group == prev.Group && o.ID != prev.ID+1 {
			t.Errorf("object %d follows %d in group %d: a group must not have holes", o.ID, prev.ID, o.Group)
		}
		if o.Group != prev.Group {
			if o.ID != 0 {
				t.Errorf("group %d starts at object %d", o.Group, o.ID)
			}
			if f, _ := hang.ParseFrame(o.Payload); !vp8Keyframe(f.Payload) {
				t.Errorf("group %d starts with an inter frame", o.Group)
			}
			if prev.ID != 9 {
				seenGap = true
			}
		}
	}
	if !seenGap {
		t.Error("no group was cut short by the loss")
	}
	if last, _ := hang.ParseFrame(got[len(got)-1].Payload); !bytes.Equal(last.Payload, frames[79]) {
		t.Error("the stream did not go on after the loss")
	}
}

// FuzzSinkTakesAnyRTP feeds arbitrary packets (as a publisher could send
// them through the node) to every codec's frame builder: nothing panics, and
// every group a viewer gets starts at object 0 with consecutive ids.
func FuzzSinkTakesAnyRTP(f *testing.F) {
	for _, p := range packetize(vp8Frames(3), 90000, 3000, &codecs.VP8Payloader{}) {
		b, _ := p.Marshal()
		f.Add(uint8(0), b)
	}
	for _, p := range packetize([][]byte{{0, 0, 0, 1, 0x65, 1, 2, 3}, {0, 0, 1, 0x41, 9}}, 90000, 3000, &codecs.H264Payloader{}) {
		b, _ := p.Marshal()
		f.Add(uint8(1), b)
	}
	for _, p := range packetize([][]byte{{1, 2, 3}}, 48000, 960, &codecs.OpusPayloader{}) {
		b, _ := p.Marshal()
		f.Add(uint8(2), b)
	}
	f.Fuzz(func(t *testing.T, track uint8, raw []byte) {
		k := testSink()
		k.AddTrack(medialink.Track{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
		k.AddTrack(medialink.Track{Index: 1, Kind: "video", MimeType: "video/H264", ClockRate: 90000})
		k.AddTrack(medialink.Track{Index: 2, Kind: "audio", MimeType: "audio/opus", ClockRate: 48000})
		vs := []*testViewer{newViewer(k, 1000), newViewer(k, 1000), newViewer(k, 1000)}
		for i, name := range []string{"video", "video2", "audio"} {
			k.Attach(vs[i], name)
		}
		// The same packet four times over, at rising sequence numbers.
		var p rtp.Packet
		if err := p.Unmarshal(raw); err != nil {
			return
		}
		for i := 0; i < 4; i++ {
			q := p
			q.SequenceNumber += uint16(i)
			q.Timestamp += uint32(i) * 3000
			k.WriteRTP(track%4, &q)
		}
		for _, v := range vs {
			got := drain(v)
			for i, o := range got {
				if i == 0 || o.Group != got[i-1].Group {
					if o.ID != 0 {
						t.Fatalf("group %d starts at object %d", o.Group, o.ID)
					}
				} else if o.ID != got[i-1].ID+1 {
					t.Fatalf("object %d after %d", o.ID, got[i-1].ID)
				}
			}
		}
	})
}

func TestAJoinerWithoutAGroupAsksForAKeyframe(t *testing.T) {
	var asked []uint8
	k := New(Config{Stream: "cam1", Log: slog.New(slog.DiscardHandler), Keyframe: func(tr uint8) { asked = append(asked, tr) }})
	k.AddTrack(medialink.Track{Index: 3, Kind: "video", MimeType: "video/VP8", ClockRate: 90000})
	k.Attach(newViewer(k, 10), "video")
	if len(asked) != 1 || asked[0] != 3 {
		t.Errorf("a joiner with no group kept asked for keyframes on %v, want [3]", asked)
	}
}
