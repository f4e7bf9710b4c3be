package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

var drafts = []moqt.Version{moqt.Draft16, moqt.Draft17, moqt.Draft19}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to r speaking only v.
func dial(t *testing.T, r *relay, v moqt.Version, o Options) *Session {
	t.Helper()
	o.CertSHA256 = r.hash
	o.Versions = []moqt.Version{v}
	s, err := Dial(ctxT(t), r.url, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Version() != v {
		t.Fatalf("negotiated %s, want %s", s.Version(), v)
	}
	return s
}

// frame is a deterministic payload: track, group, index and some bulk.
func payloadOf(track string, i, size int) []byte {
	p := []byte(fmt.Sprintf("%s-%04d|", track, i))
	for len(p) < size {
		p = append(p, byte(i+len(p)))
	}
	return p
}

func TestTheRelayReceivesTheCatalogAndEveryFrameInGroupsPerKeyframe(t *testing.T) {
	for _, v := range drafts {
		t.Run(v.String(), func(t *testing.T) {
			r := newRelay(t, relayOpts{tracks: []string{"video", "audio"}})
			s := dial(t, r, v, Options{})
			b, err := s.Publish(ctxT(t), "cam1",
				Track{Codec: VP8, Width: 320, Height: 240, Framerate: 30},
				Track{Codec: Opus, Channels: 1})
			if err != nil {
				t.Fatal(err)
			}
			r.waitSubscribed()

			const frames, gop = 30, 10
			for i := range frames {
				ts := time.Duration(i) * time.Second / 30
				if err := b.WriteFrame("video", ts, i%gop == 0, payloadOf("video", i, 900)); err != nil {
					t.Fatal(err)
				}
				if err := b.WriteFrame("audio", ts, true, payloadOf("audio", i, 80)); err != nil {
					t.Fatal(err)
				}
			}
			r.waitFor("all frames", func() bool { return len(r.objects) >= 2*frames+1 })

			cat := r.objectsOf(hang.CatalogTrack)
			if len(cat) != 1 {
				t.Fatalf("%d catalog objects, want 1", len(cat))
			}
			c, err := hang.ParseCatalog(cat[0].payload)
			if err != nil {
				t.Fatalf("catalog %s: %v", cat[0].payload, err)
			}
			vr, ar := c.Video.Renditions["video"], c.Audio.Renditions["audio"]
			if vr.Codec != "vp8" || vr.CodedWidth != 320 || vr.CodedHeight != 240 || vr.Framerate != 30 || hang.ContainerKind(vr.Container) != "legacy" {
				t.Fatalf("video rendition %+v", vr)
			}
			if ar.Codec != "opus" || ar.SampleRate != 48000 || ar.NumberOfChannels != 1 {
				t.Fatalf("audio rendition %+v", ar)
			}

			video := r.objectsOf("video")
			if len(video) != frames {
				t.Fatalf("%d video objects, want %d", len(video), frames)
			}
			sortObjects(video)
			for i, o := range video {
				if o.group != uint64(i/gop) || o.id != uint64(i%gop) {
					t.Fatalf("video frame %d in group %d object %d, want group %d object %d", i, o.group, o.id, i/gop, i%gop)
				}
				f := frameOf(t, o)
				if want := uint64(time.Duration(i) * time.Second / 30 / time.Microsecond); f.TimestampMicros != want {
					t.Fatalf("video frame %d timestamp %d µs, want %d", i, f.TimestampMicros, want)
				}
				if !bytes.Equal(f.Payload, payloadOf("video", i, 900)) {
					t.Fatalf("video frame %d payload differs", i)
				}
			}
			audio := r.objectsOf("audio")
			sortObjects(audio)
			if len(audio) != frames {
				t.Fatalf("%d audio objects, want %d", len(audio), frames)
			}
			// 30 packets at 1/30 s: the default half-second groups hold 15.
			for i, o := range audio {
				if o.group != uint64(i/15) || o.id != uint64(i%15) || !bytes.Equal(frameOf(t, o).Payload, payloadOf("audio", i, 80)) {
					t.Fatalf("audio frame %d: group %d object %d, want group %d object %d", i, o.group, o.id, i/15, i%15)
				}
			}
			wantType := uint64(0x18) // end of group, priority present
			if v == moqt.Draft19 {
				wantType = 0x58 // and FIRST_OBJECT
			}
			if video[0].streamType != wantType {
				t.Fatalf("subgroup stream type 0x%x, want 0x%x", video[0].streamType, wantType)
			}
		})
	}
}

// sortObjects orders objects by group then id: groups travel on separate
// streams, so they may arrive interleaved.
func sortObjects(os []object) {
	for i := 1; i < len(os); i++ {
		for j := i; j > 0 && (os[j].group < os[j-1].group || os[j].group == os[j-1].group && os[j].id < os[j-1].id); j-- {
			os[j], os[j-1] = os[j-1], os[j]
		}
	}
}

func TestASubscriberThatJoinsMidGroupStartsAtItsKeyframe(t *testing.T) {
	r := newRelay(t, relayOpts{tracks: []string{"video"}})
	s := dial(t, r, moqt.Draft19, Options{})
	// The frames go out before the relay can have subscribed.
	b, err := s.Publish(ctxT(t), "cam1", Track{Codec: H264, Width: 640, Height: 360})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := b.WriteFrame("video", time.Duration(i)*time.Millisecond, i == 0, payloadOf("v", i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	r.waitSubscribed()
	b.WriteFrame("video", 5*time.Millisecond, false, payloadOf("v", 5, 100))
	r.waitFor("6 frames", func() bool { return len(r.objects) >= 7 })
	video := r.objectsOf("video")
	sortObjects(video)
	for i, o := range video {
		if o.group != 0 || o.id != uint64(i) || !bytes.Equal(frameOf(t, o).Payload, payloadOf("v", i, 100)) {
			t.Fatalf("object %d: group %d id %d", i, o.group, o.id)
		}
	}
	cat, _ := hang.ParseCatalog(r.objectsOf(hang.CatalogTrack)[0].payload)
	if got := cat.Video.Renditions["video"].Codec; got != "avc1.42e01f" {
		t.Fatalf("H.264 codec string %q", got)
	}
}

func TestCloseSendsPublishDoneAndWithdrawsTheAnnouncement(t *testing.T) {
	for _, v := range drafts {
		t.Run(v.String(), func(t *testing.T) {
			before := runtime.NumGoroutine()
			r := newRelay(t, relayOpts{tracks: []string{"video"}})
			s := dial(t, r, v, Options{})
			b, err := s.Publish(ctxT(t), "cam1", Track{Codec: VP8})
			if err != nil {
				t.Fatal(err)
			}
			r.waitSubscribed()
			for i := range 25 {
				b.WriteFrame("video", time.Duration(i)*time.Millisecond, i%10 == 0, payloadOf("v", i, 2000))
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := b.WriteFrame("video", time.Second, true, []byte{1}); !errors.Is(err, ErrClosed) {
				t.Fatalf("WriteFrame after Close: %v, want ErrClosed", err)
			}
			r.waitFor("the connection's close", func() bool { return r.closeCode != nil })
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.closeCode.ErrorCode != 0 {
				t.Fatalf("closed with code 0x%x, want NO_ERROR", r.closeCode.ErrorCode)
			}
			if !r.nsDone {
				t.Fatal("the announcement was not withdrawn")
			}
			if got := len(r.objects); got != 26 {
				t.Fatalf("%d objects arrived before the close, want all 26", got)
			}
			if len(r.dones) != 2 {
				t.Fatalf("%d PUBLISH_DONE, want one per subscription (2)", len(r.dones))
			}
			for _, d := range r.dones {
				if d.Status != moqt.DoneTrackEnded {
					t.Fatalf("PUBLISH_DONE status 0x%x, want TRACK_ENDED", d.Status)
				}
				if d.StreamCount != 1 && d.StreamCount != 3 { // catalog: 1 group, video: 3
					t.Fatalf("PUBLISH_DONE stream count %d", d.StreamCount)
				}
			}
			r.mu.Unlock()
			waitGoroutines(t, before)
			r.mu.Lock()
		})
	}
}

// waitGoroutines fails if the goroutine count does not fall back to n
// (plus the relay's, which end at cleanup) within a few seconds.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	var got int
	for range 100 {
		if got = runtime.NumGoroutine(); got <= n+8 {
			return
		}
		time.Sleep(30 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines after Close, %d before:\n%s", got, n, buf[:runtime.Stack(buf, true)])
}

func TestARefusedAnnouncementReturnsTheServersCodeAndReason(t *testing.T) {
	for _, v := range drafts {
		t.Run(v.String(), func(t *testing.T) {
			r := newRelay(t, relayOpts{refuse: &moqt.RequestError{Code: moqt.ReqUnauthorized, Reason: "token does not grant publish"}})
			s := dial(t, r, v, Options{Token: "secret-token"})
			_, err := s.Publish(ctxT(t), "cam1", Track{Codec: Opus})
			var re *RequestError
			if !errors.As(err, &re) || moqt.CodeOf(err) != moqt.ReqUnauthorized {
				t.Fatalf("Publish: %v (code 0x%x), want a RequestError with UNAUTHORIZED", err, moqt.CodeOf(err))
			}
			if !strings.Contains(err.Error(), "token does not grant publish") {
				t.Fatalf("error %q lacks the server's reason", err)
			}
			want := append([]byte{0x03, 0x00}, "secret-token"...)
			r.waitFor("the client's SETUP", func() bool { return r.setup != nil })
			r.mu.Lock()
			defer r.mu.Unlock()
			tok, ok := r.announce.Params.Get(moqt.ParamAuthToken)
			if !ok || !bytes.Equal(tok.Bytes, want) {
				t.Fatalf("PUBLISH_NAMESPACE token %x, want %x", tok.Bytes, want)
			}
			if tok, ok := r.setup.Get(moqt.SetupAuthToken); !ok || !bytes.Equal(tok.Bytes, want) {
				t.Fatalf("setup token %x, want %x", tok.Bytes, want)
			}
			if p, _ := r.setup.Get(moqt.SetupPath); string(p.Bytes) != "/live" {
				t.Fatalf("PATH %q, want /live", p.Bytes)
			}
			if !r.announce.Namespace.Equal(moqt.Namespace{"cam1"}) {
				t.Fatalf("namespace %v, want the stream id as its one field", r.announce.Namespace)
			}
		})
	}
}

func TestAServerWithNoCommonDraftFailsVersionNegotiation(t *testing.T) {
	r := newRelay(t, relayOpts{alpns: []string{"moqt-15"}})
	_, err := Dial(ctxT(t), r.url, &Options{CertSHA256: r.hash})
	if !errors.Is(err, ErrVersionNegotiation) || moqt.CodeOf(err) != moqt.CodeVersionNegotiationFailed {
		t.Fatalf("Dial: %v, want version negotiation failure", err)
	}
}

func TestAWrongCertificateHashIsRefused(t *testing.T) {
	r := newRelay(t, relayOpts{})
	_, err := Dial(ctxT(t), r.url, &Options{CertSHA256: strings.Repeat("ab", 32)})
	if err == nil || !strings.Contains(err.Error(), "does not match the pinned") {
		t.Fatalf("Dial with a wrong hash: %v", err)
	}
	if _, err := Dial(ctxT(t), r.url, &Options{CertSHA256: "abc"}); err == nil {
		t.Fatal("Dial accepted a malformed hash")
	}
}

func TestPublishRejectsWhatAViewerCouldNotUse(t *testing.T) {
	r := newRelay(t, relayOpts{})
	s := dial(t, r, moqt.Draft16, Options{})
	for _, c := range []struct {
		name   string
		stream string
		tracks []Track
	}{
		{"bad stream id", "cam/1", []Track{{Codec: VP8}}},
		{"no tracks", "cam1", nil},
		{"unknown codec", "cam1", []Track{{Codec: "av1"}}},
		{"duplicate names", "cam1", []Track{{Codec: VP8}, {Codec: H264}}},
		{"catalog name", "cam1", []Track{{Codec: VP8, Name: "catalog.json"}}},
	} {
		if _, err := s.Publish(ctxT(t), c.stream, c.tracks...); err == nil {
			t.Errorf("%s: Publish succeeded", c.name)
		}
	}
}

func TestWriteFrameNeedsAKeyframeFirstAndAKnownTrack(t *testing.T) {
	r := newRelay(t, relayOpts{})
	s := dial(t, r, moqt.Draft19, Options{})
	b, err := s.Publish(ctxT(t), "cam1", Track{Codec: VP8})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFrame("video", 0, false, []byte{1}); !errors.Is(err, ErrNoKeyframe) {
		t.Fatalf("delta frame first: %v", err)
	}
	if err := b.WriteFrame("nope", 0, true, []byte{1}); err == nil {
		t.Fatal("a frame for an unknown track was accepted")
	}
	r.waitSubscribed()
}

func TestHTTPSIsRefusedWithAClearMessage(t *testing.T) {
	_, err := Dial(ctxT(t), "https://127.0.0.1:4443/", nil)
	if err == nil || !strings.Contains(err.Error(), "WebTransport") {
		t.Fatalf("https URL: %v", err)
	}
}

func TestASlowSubscriberLosesWholeGroupsAndMemoryStaysBounded(t *testing.T) {
	for _, v := range []moqt.Version{moqt.Draft16, moqt.Draft19} {
		t.Run(v.String(), func(t *testing.T) {
			r := newRelay(t, relayOpts{tracks: []string{"video"}, stall: true})
			const limit, size, gop, groups = 64 << 10, 8 << 10, 5, 60
			s := dial(t, r, v, Options{MaxQueuedBytes: limit})
			b, err := s.Publish(ctxT(t), "cam1", Track{Codec: VP8})
			if err != nil {
				t.Fatal(err)
			}
			r.waitSubscribed()
			vt := b.tracks["video"]
			// The relay reads no data stream: QUIC flow control stops the
			// writer after its windows fill, and the queue must not grow.
			for i := range groups * gop {
				if err := b.WriteFrame("video", time.Duration(i)*time.Millisecond, i%gop == 0, payloadOf("v", i, size)); err != nil {
					t.Fatal(err)
				}
				vt.mu.Lock()
				for sub := range vt.subs {
					sub.mu.Lock()
					if sub.queued > limit {
						t.Errorf("frame %d: %d bytes queued, over the %d limit", i, sub.queued, limit)
					}
					sub.mu.Unlock()
				}
				vt.mu.Unlock()
			}
			r.release()
			b.Close()
			last := [2]uint64{3, groups - 1}
			r.waitFor("the last group", func() bool { return r.complete[last] == gop })

			r.mu.Lock()
			defer r.mu.Unlock()
			whole := 0
			for key, n := range r.complete {
				if key[0] != 3 {
					continue
				}
				whole++
				if n != gop {
					t.Fatalf("group %d ended with FIN after %d of %d objects", key[1], n, gop)
				}
			}
			if whole >= groups {
				t.Fatalf("all %d groups arrived: nothing was dropped, so the test proved nothing", groups)
			}
			for _, o := range r.objects {
				if o.alias != 3 || r.complete[[2]uint64{3, o.group}] == 0 {
					continue
				}
				i := int(o.group)*gop + int(o.id)
				if !bytes.Equal(frameOf(t, o).Payload, payloadOf("v", i, size)) {
					t.Fatalf("group %d object %d: payload differs", o.group, o.id)
				}
			}
			t.Logf("%s: %d of %d groups delivered whole, %d streams reset", v, whole, groups, r.resets)
		})
	}
}

// TestOpusGroupsSpanTheAudioGroupSetting: packets every 20 ms make a group
// per AudioGroup (a packet 500 ms after its group's first starts the next),
// a negative setting a group per packet, and a timestamp going back (a new
// input) starts a group at once.
func TestOpusGroupsSpanTheAudioGroupSetting(t *testing.T) {
	for _, c := range []struct {
		opt        time.Duration
		wantGroups uint64 // after 100 packets: ids 0..wantGroups-1
	}{{0, 4}, {200 * time.Millisecond, 10}, {-1, 100}} {
		o := (&Options{AudioGroup: c.opt}).withDefaults()
		tr := newTrack("audio", 64, o.MaxQueuedBytes)
		tr.span = max(o.AudioGroup, 0)
		for i := range 100 {
			if err := tr.write([]byte{byte(i)}, time.Duration(i)*20*time.Millisecond, true); err != nil {
				t.Fatal(err)
			}
		}
		if got := tr.group + 1; got != c.wantGroups {
			t.Errorf("AudioGroup %v: %d groups for 2 s of audio, want %d", c.opt, got, c.wantGroups)
		}
		before := tr.group
		if err := tr.write([]byte{0}, 0, true); err != nil {
			t.Fatal(err)
		}
		if tr.group != before+1 {
			t.Errorf("AudioGroup %v: a timestamp going back did not start a group", c.opt)
		}
	}
}
