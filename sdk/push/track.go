package push

import (
	"fmt"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// Codec is a media codec a Track carries.
type Codec string

// The codecs sluice carries end to end (RTP packetizers exist for them).
const (
	// VP8 frames are VP8 frames as an IVF file holds them.
	VP8 Codec = "vp8"
	// H264 frames are access units in Annex B (start codes), SPS and PPS in
	// band before each IDR, as @moq/publish sends them.
	H264 Codec = "h264"
	// Opus frames are Opus packets.
	Opus Codec = "opus"
)

func (c Codec) video() bool { return c == VP8 || c == H264 }

// Track describes one media track of a broadcast; it becomes a rendition in
// the catalog. Fields that do not apply to the codec's kind are ignored.
type Track struct {
	// Name is the MoQT track name frames are written to. Zero: "video" for a
	// video codec, "audio" for an audio codec.
	Name  string
	Codec Codec
	// CodecString is the WebCodecs codec string put in the catalog. Zero:
	// "vp8", "avc1.42e01f" (H.264 Constrained Baseline, level 3.1) or "opus".
	CodecString string
	// Width and Height are the coded size in pixels, when known (0: unknown).
	Width, Height int
	// Framerate in frames per second, when known (0: unknown).
	Framerate float64
	// Bitrate in bits per second, when known (0: unknown).
	Bitrate int
	// SampleRate of audio in Hz. Zero: 48000.
	SampleRate int
	// Channels of audio. Zero: 2.
	Channels int
}

func (t Track) withDefaults() Track {
	if t.Name == "" {
		if t.Codec.video() {
			t.Name = "video"
		} else {
			t.Name = "audio"
		}
	}
	if t.CodecString == "" {
		switch t.Codec {
		case VP8:
			t.CodecString = "vp8"
		case H264:
			t.CodecString = "avc1.42e01f"
		case Opus:
			t.CodecString = "opus"
		}
	}
	if !t.Codec.video() {
		if t.SampleRate == 0 {
			t.SampleRate = 48000
		}
		if t.Channels == 0 {
			t.Channels = 2
		}
	}
	return t
}

// catalog builds the hang catalog of tracks (already defaulted), checking
// that each is something a viewer can use.
func catalog(tracks []Track) ([]byte, error) {
	if len(tracks) == 0 {
		return nil, fmt.Errorf("push: a broadcast needs at least one track")
	}
	var c hang.Catalog
	legacy := &hang.Container{Kind: hang.ContainerLegacy}
	seen := map[string]bool{}
	for _, t := range tracks {
		if t.Name == hang.CatalogTrack || seen[t.Name] {
			return nil, fmt.Errorf("push: track name %q used twice or reserved", t.Name)
		}
		if len(t.Name) > moqt.MaxFullTrackName/2 {
			return nil, fmt.Errorf("push: track name of %d bytes", len(t.Name))
		}
		seen[t.Name] = true
		if t.Width < 0 || t.Height < 0 || t.Bitrate < 0 || t.SampleRate < 0 || t.Channels < 0 {
			return nil, fmt.Errorf("push: track %q: negative size, rate or channel count", t.Name)
		}
		switch t.Codec {
		case VP8, H264:
			if c.Video == nil {
				c.Video = &hang.VideoSection{Renditions: map[string]hang.VideoConfig{}}
			}
			c.Video.Renditions[t.Name] = hang.VideoConfig{
				Codec: t.CodecString, Container: legacy,
				CodedWidth: uint64(t.Width), CodedHeight: uint64(t.Height),
				Framerate: t.Framerate, Bitrate: uint64(t.Bitrate),
			}
		case Opus:
			if c.Audio == nil {
				c.Audio = &hang.AudioSection{Renditions: map[string]hang.AudioConfig{}}
			}
			c.Audio.Renditions[t.Name] = hang.AudioConfig{
				Codec: t.CodecString, Container: legacy,
				SampleRate: uint64(t.SampleRate), NumberOfChannels: uint64(t.Channels),
				Bitrate: uint64(t.Bitrate),
			}
		default:
			return nil, fmt.Errorf("push: track %q: codec %q (want vp8, h264 or opus)", t.Name, t.Codec)
		}
	}
	b, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("push: catalog: %w", err)
	}
	return b, nil
}
