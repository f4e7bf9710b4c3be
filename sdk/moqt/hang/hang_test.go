package hang

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// testdata/catalog-moq-publish.json has the shape @moq/publish 0.2.17 builds
// (its source-*.js: video "video/hd" with codedWidth/codedHeight,
// optimizeForLatency, legacy container, jitter; audio "audio/data" opus with
// sampleRate, numberOfChannels, bitrate, jitter), with the values a 720p30
// camera and stereo microphone give.
func TestParseCatalogFromMoqPublish(t *testing.T) {
	b, err := os.ReadFile("testdata/catalog-moq-publish.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCatalog(b)
	if err != nil {
		t.Fatal(err)
	}
	hd, ok := c.Video.Renditions["video/hd"]
	if !ok || hd.Codec != "avc1.640028" || hd.CodedWidth != 1280 || hd.CodedHeight != 720 || ContainerKind(hd.Container) != ContainerLegacy {
		t.Errorf("video/hd = %+v", hd)
	}
	a, ok := c.Audio.Renditions["audio/data"]
	if !ok || a.Codec != "opus" || a.SampleRate != 48000 || a.NumberOfChannels != 2 {
		t.Errorf("audio/data = %+v", a)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseCatalog(out)
	if err != nil || !reflect.DeepEqual(again, c) {
		t.Errorf("round trip: %v\n%+v\n%+v", err, again, c)
	}
}

func TestCatalogIgnoresUnknownSectionsAndDefaultsContainer(t *testing.T) {
	c, err := ParseCatalog([]byte(`{"scte35":{"x":1},"audio":{"renditions":{"a":{"codec":"opus","sampleRate":48000,"numberOfChannels":1}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ContainerKind(c.Audio.Renditions["a"].Container) != ContainerLegacy {
		t.Error("missing container is not legacy")
	}
}

func TestCatalogRejects(t *testing.T) {
	audio := func(r string) string { return `{"audio":{"renditions":{` + r + `}}}` }
	cases := map[string]string{
		"not json":          `{"video":`,
		"trailing data":     `{} {}`,
		"zero renditions":   `{"video":{"renditions":{}}}`,
		"empty codec":       audio(`"a":{"codec":"","sampleRate":1,"numberOfChannels":1}`),
		"codec with spaces": audio(`"a":{"codec":"op us","sampleRate":1,"numberOfChannels":1}`),
		"no sample rate":    audio(`"a":{"codec":"opus","numberOfChannels":1}`),
		"256 channels":      audio(`"a":{"codec":"opus","sampleRate":1,"numberOfChannels":256}`),
		"empty track name":  audio(`"":{"codec":"opus","sampleRate":1,"numberOfChannels":1}`),
		"bad description":   audio(`"a":{"codec":"opus","sampleRate":1,"numberOfChannels":1,"description":"zz"}`),
		"unknown container": audio(`"a":{"codec":"opus","sampleRate":1,"numberOfChannels":1,"container":{"kind":"mpegts"}}`),
		"cmaf without init": audio(`"a":{"codec":"opus","sampleRate":1,"numberOfChannels":1,"container":{"kind":"cmaf"}}`),
		"negative width":    `{"video":{"renditions":{"v":{"codec":"vp8","codedWidth":-1}}}}`,
		"width over 2^53":   `{"video":{"renditions":{"v":{"codec":"vp8","codedWidth":9007199254740992}}}}`,
		"too large":         `{"x":"` + strings.Repeat("a", MaxCatalogSize) + `"}`,
	}
	for name, js := range cases {
		if _, err := ParseCatalog([]byte(js)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	many := map[string]AudioConfig{}
	for i := range MaxRenditions + 1 {
		many[string(rune('a'+i))] = AudioConfig{Codec: "opus", SampleRate: 1, NumberOfChannels: 1}
	}
	if _, err := (&Catalog{Audio: &AudioSection{Renditions: many}}).Marshal(); err == nil {
		t.Error("Marshal accepted too many renditions")
	}
}

func TestFrame(t *testing.T) {
	// @moq/hang 0.2.16 container/legacy.js: QUIC varint microseconds, then the
	// payload. 33_366 µs is a 4-byte RFC 9000 varint: 0x80008256.
	f := Frame{TimestampMicros: 33366, Payload: []byte{0x9d, 0x01, 0x2a}}
	b := f.Append(nil)
	if want := []byte{0x80, 0x00, 0x82, 0x56, 0x9d, 0x01, 0x2a}; !bytes.Equal(b, want) {
		t.Fatalf("encoded %x, want %x", b, want)
	}
	got, err := ParseFrame(b)
	if err != nil || got.TimestampMicros != 33366 || !bytes.Equal(got.Payload, f.Payload) {
		t.Fatalf("parsed %+v %v", got, err)
	}
	if _, err := ParseFrame([]byte{0xc0, 1}); err == nil {
		t.Error("truncated timestamp accepted")
	}
}

func FuzzCatalog(f *testing.F) {
	if b, err := os.ReadFile("testdata/catalog-moq-publish.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"audio":{"renditions":{"a":{"codec":"opus","sampleRate":48000,"numberOfChannels":2}}}}`))
	f.Add([]byte(`{"video":{"renditions":{"v":{"codec":"vp8","container":{"kind":"cmaf","init":"AAAA"}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCatalog(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("valid catalog does not marshal: %v", err)
		}
		again, err := ParseCatalog(out)
		if err != nil {
			t.Fatalf("marshalled catalog does not parse: %v\n%s", err, out)
		}
		x, _ := json.Marshal(again)
		if !bytes.Equal(x, out) {
			t.Fatalf("round trip changed\n%s\n%s", out, x)
		}
	})
}

func FuzzFrame(f *testing.F) {
	f.Add([]byte{0x80, 0x00, 0x82, 0x56, 0x9d, 0x01, 0x2a})
	f.Add([]byte{0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			return
		}
		again, err := ParseFrame(fr.Append(nil))
		if err != nil || again.TimestampMicros != fr.TimestampMicros || !bytes.Equal(again.Payload, fr.Payload) {
			t.Fatalf("round trip %+v → %+v, %v", fr, again, err)
		}
	})
}
