// Package hang is moq-dev's "hang" media format carried over MoQT (package
// moqt): a broadcast is a namespace (its path, conventionally ending in
// ".hang") whose track "catalog.json" carries a JSON [Catalog] describing the
// media tracks, each of which carries one [Frame] per object, every group
// starting at a keyframe. See ../RATIONALE.md for where the layout comes from.
package hang

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// Names used by moq-dev's publisher (@moq/publish).
const (
	// CatalogTrack is the track that carries the Catalog.
	CatalogTrack = "catalog.json"
	// Suffix marks a broadcast name as hang ("cam1.hang").
	Suffix = ".hang"
)

// Container kinds. Only "legacy" (timestamp varint + codec payload) is
// what @moq/publish sends; the others are named so they can be refused clearly.
const (
	ContainerLegacy = "legacy"
	ContainerCMAF   = "cmaf"
	ContainerLOC    = "loc"
)

// Limits on a catalog, so a hostile one cannot cost much to validate.
const (
	MaxCatalogSize   = 64 << 10
	MaxRenditions    = 16
	maxCodecString   = 128
	maxJSONSafeInt   = 1<<53 - 1
	maxDescription   = 16 << 10
	maxAudioChannels = 255
)

// Catalog is hang's catalog.json. Unknown root sections are ignored, as hang
// allows applications to add their own.
type Catalog struct {
	Video *VideoSection `json:"video,omitempty"`
	Audio *AudioSection `json:"audio,omitempty"`
}

// VideoSection maps track names to video renditions.
type VideoSection struct {
	Renditions map[string]VideoConfig `json:"renditions"`
	Display    *Display               `json:"display,omitempty"`
	Rotation   *float64               `json:"rotation,omitempty"`
	Flip       *bool                  `json:"flip,omitempty"`
}

// Display is the size to render video at, in pixels.
type Display struct {
	Width  uint64 `json:"width"`
	Height uint64 `json:"height"`
}

// Container says how a track's frames are laid out.
type Container struct {
	Kind string `json:"kind"`
	Init string `json:"init,omitempty"` // cmaf: base64 ftyp+moov
}

// VideoConfig mirrors WebCodecs' VideoDecoderConfig.
type VideoConfig struct {
	Codec              string     `json:"codec"` // WebCodecs codec string: "vp8", "avc1.640028", ...
	Container          *Container `json:"container,omitempty"`
	Description        string     `json:"description,omitempty"` // hex decoder config (e.g. avcC)
	CodedWidth         uint64     `json:"codedWidth,omitempty"`
	CodedHeight        uint64     `json:"codedHeight,omitempty"`
	DisplayAspectW     uint64     `json:"displayAspectWidth,omitempty"`
	DisplayAspectH     uint64     `json:"displayAspectHeight,omitempty"`
	Framerate          float64    `json:"framerate,omitempty"`
	Bitrate            uint64     `json:"bitrate,omitempty"`
	OptimizeForLatency *bool      `json:"optimizeForLatency,omitempty"`
	Jitter             uint64     `json:"jitter,omitempty"` // milliseconds
}

// AudioSection maps track names to audio renditions.
type AudioSection struct {
	Renditions map[string]AudioConfig `json:"renditions"`
}

// AudioConfig mirrors WebCodecs' AudioDecoderConfig.
type AudioConfig struct {
	Codec            string     `json:"codec"` // "opus", "mp4a.40.2", ...
	Container        *Container `json:"container,omitempty"`
	Description      string     `json:"description,omitempty"`
	SampleRate       uint64     `json:"sampleRate"`
	NumberOfChannels uint64     `json:"numberOfChannels"`
	Bitrate          uint64     `json:"bitrate,omitempty"`
	Jitter           uint64     `json:"jitter,omitempty"`
}

// ParseCatalog decodes and validates a catalog.json object payload.
func ParseCatalog(b []byte) (*Catalog, error) {
	if len(b) > MaxCatalogSize {
		return nil, fmt.Errorf("hang: catalog of %d bytes exceeds %d", len(b), MaxCatalogSize)
	}
	var c Catalog
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("hang: catalog: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("hang: catalog: trailing data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Marshal validates c and encodes it as catalog.json.
func (c *Catalog) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// Validate checks what a consumer relies on: bounded rendition counts, track
// names usable as MoQT track names, codec strings, integers JavaScript can
// represent, hex descriptions and known containers.
func (c *Catalog) Validate() error {
	if c.Video != nil {
		if err := checkRenditions(len(c.Video.Renditions)); err != nil {
			return fmt.Errorf("hang: catalog video: %w", err)
		}
		for name, r := range c.Video.Renditions {
			if err := r.validate(name); err != nil {
				return fmt.Errorf("hang: catalog video %q: %w", name, err)
			}
		}
		if d := c.Video.Display; d != nil && (d.Width > maxJSONSafeInt || d.Height > maxJSONSafeInt) {
			return fmt.Errorf("hang: catalog video display size out of range")
		}
		if r := c.Video.Rotation; r != nil && (math.IsNaN(*r) || math.IsInf(*r, 0)) {
			return fmt.Errorf("hang: catalog video rotation not finite")
		}
	}
	if c.Audio != nil {
		if err := checkRenditions(len(c.Audio.Renditions)); err != nil {
			return fmt.Errorf("hang: catalog audio: %w", err)
		}
		for name, r := range c.Audio.Renditions {
			if err := r.validate(name); err != nil {
				return fmt.Errorf("hang: catalog audio %q: %w", name, err)
			}
		}
	}
	return nil
}

func checkRenditions(n int) error {
	if n == 0 || n > MaxRenditions {
		return fmt.Errorf("%d renditions (want 1..%d)", n, MaxRenditions)
	}
	return nil
}

func (r VideoConfig) validate(name string) error {
	if err := checkCommon(name, r.Codec, r.Description, r.Container); err != nil {
		return err
	}
	for _, x := range []uint64{r.CodedWidth, r.CodedHeight, r.DisplayAspectW, r.DisplayAspectH, r.Bitrate, r.Jitter} {
		if x > maxJSONSafeInt {
			return fmt.Errorf("integer %d out of range", x)
		}
	}
	if r.Framerate < 0 || math.IsNaN(r.Framerate) || math.IsInf(r.Framerate, 0) {
		return fmt.Errorf("framerate %v", r.Framerate)
	}
	return nil
}

func (r AudioConfig) validate(name string) error {
	if err := checkCommon(name, r.Codec, r.Description, r.Container); err != nil {
		return err
	}
	if r.SampleRate == 0 || r.SampleRate > maxJSONSafeInt {
		return fmt.Errorf("sample rate %d", r.SampleRate)
	}
	if r.NumberOfChannels == 0 || r.NumberOfChannels > maxAudioChannels {
		return fmt.Errorf("%d channels", r.NumberOfChannels)
	}
	if r.Bitrate > maxJSONSafeInt || r.Jitter > maxJSONSafeInt {
		return fmt.Errorf("integer out of range")
	}
	return nil
}

func checkCommon(name, codec, description string, c *Container) error {
	if name == "" || len(name) > moqt.MaxFullTrackName {
		return fmt.Errorf("track name of %d bytes", len(name))
	}
	if codec == "" || len(codec) > maxCodecString || strings.ContainsFunc(codec, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return fmt.Errorf("codec %q", codec)
	}
	if len(description) > maxDescription {
		return fmt.Errorf("description of %d bytes", len(description))
	}
	if _, err := hex.DecodeString(description); err != nil {
		return fmt.Errorf("description is not hex: %w", err)
	}
	if c == nil {
		return nil // hang's default container is legacy
	}
	switch c.Kind {
	case ContainerLegacy, ContainerLOC:
		return nil
	case ContainerCMAF:
		if _, err := base64.StdEncoding.DecodeString(c.Init); err != nil || c.Init == "" {
			return fmt.Errorf("cmaf container without a base64 init segment")
		}
		return nil
	}
	return fmt.Errorf("container kind %q", c.Kind)
}

// ContainerKind is the rendition's container kind, "legacy" when unset.
func ContainerKind(c *Container) string {
	if c == nil {
		return ContainerLegacy
	}
	return c.Kind
}

// Frame is one frame of a hang "legacy" track: the object payload is a
// presentation timestamp in microseconds as an RFC 9000 varint (whatever the
// MoQT version), then the codec payload. A frame that opens a group is a keyframe.
type Frame struct {
	TimestampMicros uint64
	Payload         []byte
}

// Append appends the frame's object payload. TimestampMicros must be below
// 2^62 (the RFC 9000 varint range; 2^62 µs is about 146,000 years).
func (f Frame) Append(b []byte) []byte {
	b = moqt.AppendVarint(b, moqt.Draft16, f.TimestampMicros)
	return append(b, f.Payload...)
}

// ParseFrame splits an object payload into timestamp and codec payload
// (which aliases b). An empty codec payload is hang's end-of-content marker.
func ParseFrame(b []byte) (Frame, error) {
	ts, n, err := moqt.ParseVarint(b, moqt.Draft16)
	if err != nil {
		return Frame{}, fmt.Errorf("hang: frame timestamp: %w", err)
	}
	return Frame{TimestampMicros: ts, Payload: b[n:]}, nil
}
