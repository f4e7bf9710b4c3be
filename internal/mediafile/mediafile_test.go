package mediafile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/mediatest"
)

func TestTheIVFSourceGivesEveryFrameWithItsTimeAndKeyframesAndLoopsOn(t *testing.T) {
	want, err := mediatest.LoadIVF("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenIVF("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if tr := src.Track(); tr.Width != 320 || tr.Height != 240 || tr.Framerate != 30 {
		t.Fatalf("track %+v, want 320x240 at 30 fps", tr)
	}
	for pass := range 2 {
		for i, w := range want {
			f, err := src.Next()
			if err != nil {
				t.Fatalf("pass %d frame %d: %v", pass, i, err)
			}
			n := pass*len(want) + i
			if wantTS := time.Duration(n) * time.Second / 30; (f.TS - wantTS).Abs() > time.Microsecond {
				t.Fatalf("frame %d at %s, want %s", n, f.TS, wantTS)
			}
			if f.Key != (i%30 == 0) || !bytes.Equal(f.Data, w) {
				t.Fatalf("frame %d: key %v (want %v) or payload differs", n, f.Key, i%30 == 0)
			}
		}
		if _, err := src.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame: %v, want EOF", err)
		}
		if err := src.Rewind(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTheOggSourceGivesEveryOpusPacketTwentyMillisecondsApart(t *testing.T) {
	want, err := mediatest.LoadOgg("../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenOgg("../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if tr := src.Track(); tr.Channels != 1 || tr.SampleRate != 48000 {
		t.Fatalf("track %+v, want mono 48 kHz", tr)
	}
	var prev time.Duration
	for pass := range 2 {
		for i, w := range want {
			f, err := src.Next()
			if err != nil {
				t.Fatalf("pass %d packet %d: %v", pass, i, err)
			}
			if !f.Key || !bytes.Equal(f.Data, w) {
				t.Fatalf("packet %d differs", i)
			}
			if n := pass*len(want) + i; n > 1 && f.TS-prev != 20*time.Millisecond {
				t.Fatalf("packet %d at %s, %s after the previous, want 20ms", n, f.TS, f.TS-prev)
			}
			prev = f.TS
		}
		if _, err := src.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last packet: %v, want EOF", err)
		}
		if err := src.Rewind(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpusPacketDurationsFromTheTOCByte(t *testing.T) {
	for _, c := range []struct {
		p    []byte
		want int
	}{
		{[]byte{0xfc}, 960},           // CELT 20 ms, one frame
		{[]byte{0x78}, 960},           // hybrid 20 ms (config 15)
		{[]byte{0x11}, 2 * 1920},      // SILK 40 ms, two frames
		{[]byte{0xe3, 0x03}, 3 * 120}, // CELT 2.5 ms, code 3 with three frames
		{nil, 0},
	} {
		if got := opusSamples(c.p); got != c.want {
			t.Errorf("opusSamples(%x) = %d, want %d", c.p, got, c.want)
		}
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// FuzzPushSources feeds arbitrary bytes to the IVF and Ogg readers of
// `sluice push` (its own Ogg packet splitting and Opus timing included): they
// must return frames or an error, never panic or loop.
func FuzzSources(f *testing.F) {
	for _, path := range []string{"../../testdata/audio.ogg", "../../testdata/video.ivf"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4096)])
		f.Add(b[:min(len(b), 200)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, open := range []func() (Source, error){
			func() (Source, error) { return newOgg("fuzz", nopCloser{bytes.NewReader(b)}) },
			func() (Source, error) { return newIVF("fuzz", nopCloser{bytes.NewReader(b)}) },
		} {
			src, err := open()
			if err != nil {
				continue
			}
			src.Track()
			for range 10000 {
				if _, err := src.Next(); err != nil {
					break
				}
			}
		}
	})
}

// An IVF frame header that announces more than the limit is refused before any
// buffer of that size is made, and a real file passes through unchanged.
func TestAnIVFFrameOverTheLimitIsRefusedAndARealFilePassesUnchanged(t *testing.T) {
	real, err := os.ReadFile("../../testdata/video.ivf")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, &ivfFrameLimit{r: bytes.NewReader(real), max: maxIVFFrame, next: ivfFileHeaderSize}); err != nil || !bytes.Equal(out.Bytes(), real) {
		t.Fatalf("the real file did not pass through: %v (%d of %d bytes)", err, out.Len(), len(real))
	}
	bad := append([]byte(nil), real[:ivfFileHeaderSize]...)
	bad = append(bad, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0) // a 4 GiB frame
	s, err := newIVF("bad.ivf", nopSeekCloser{bytes.NewReader(bad)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a 4 GiB frame header: %v", err)
	}
}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }
