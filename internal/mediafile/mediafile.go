// Package mediafile reads media files as timed frames: VP8 from IVF and Opus from
// Ogg, from a file or stdin, each frame with its presentation time and keyframe
// flag, for `sluice push`. The inputs may be live pipes from an encoder, so
// every size a file announces is bounded before it is allocated.
package mediafile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/sluicegw/sluice/sdk/push"
)

// Source is one input file's frames with their presentation times.
type Source interface {
	Track() push.Track
	// Next returns the next frame, io.EOF at the end of the input.
	Next() (Frame, error)
	// Rewind starts the input again, timestamps continuing after the last frame.
	Rewind() error
	Close() error
}

// Frame is one frame of an input.
type Frame struct {
	TS   time.Duration // presentation time, continuing across Rewind
	Key  bool          // a keyframe (always, for audio)
	Data []byte
}

// openInput opens path, or stdin for "-".
func openInput(path string) (io.ReadSeekCloser, error) {
	if path == "-" {
		return stdinInput{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

type stdinInput struct{}

func (stdinInput) Read(b []byte) (int, error) { return os.Stdin.Read(b) }
func (stdinInput) Seek(int64, int) (int64, error) {
	return 0, errors.New("stdin cannot be rewound")
}
func (stdinInput) Close() error { return nil }

// timeline turns per-pass timestamps into one that continues across --loop.
type timeline struct {
	base, last, step time.Duration
	first            time.Duration
	started          bool
}

func (tl *timeline) at(raw time.Duration) time.Duration {
	if !tl.started {
		tl.first, tl.started = raw, true
	}
	ts := tl.base + raw - tl.first
	if d := ts - tl.last; d > 0 {
		tl.step = d
	}
	tl.last = ts
	return ts
}

// rewind continues one frame step after the last timestamp.
func (tl *timeline) rewind() {
	tl.base, tl.started = tl.last+tl.step, false
}

// maxIVFFrame bounds one IVF frame: a VP8 keyframe of 4K video is a few MB.
const maxIVFFrame = 16 << 20

const ivfFileHeaderSize = 32

// ivfFrameLimit passes an IVF stream through and refuses a frame whose header
// announces more than max bytes, before pion's reader allocates the frame (it
// makes a buffer of whatever size the header says, up to 4 GiB).
type ivfFrameLimit struct {
	r    io.Reader
	max  uint32
	pos  int64 // bytes passed on
	next int64 // offset of the next frame header
	size [4]byte
}

func (l *ivfFrameLimit) Read(p []byte) (int, error) {
	end := l.next + 4 // the frame size field ends here
	if l.pos < end && l.pos+int64(len(p)) > end {
		p = p[:end-l.pos] // stop after the size field, to judge it first
	}
	n, err := l.r.Read(p)
	for i := range n {
		if at := l.pos + int64(i); at >= l.next && at < end {
			l.size[at-l.next] = p[i]
		}
	}
	l.pos += int64(n)
	if l.pos == end {
		size := binary.LittleEndian.Uint32(l.size[:])
		if size > l.max {
			return n, fmt.Errorf("an IVF frame of %d bytes; at most %d are allowed", size, l.max)
		}
		l.next = end + 8 + int64(size)
	}
	return n, err
}

// ivfSource reads VP8 frames from IVF.
type ivfSource struct {
	path  string
	in    io.ReadSeekCloser
	r     *ivfreader.IVFReader
	hdr   *ivfreader.IVFFileHeader
	frame int
	tl    timeline
}

// OpenIVF reads VP8 frames from an IVF file, or from stdin for "-".
func OpenIVF(path string) (Source, error) {
	in, err := openInput(path)
	if err != nil {
		return nil, err
	}
	s, err := newIVF(path, in)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newIVF(path string, in io.ReadSeekCloser) (*ivfSource, error) {
	s := &ivfSource{path: path, in: in}
	if err := s.start(); err != nil {
		in.Close()
		return nil, err
	}
	if s.hdr.FourCC != "VP80" {
		in.Close()
		return nil, fmt.Errorf("%s: IVF codec %q; only VP8 (VP80) is read", path, s.hdr.FourCC)
	}
	return s, nil
}

func (s *ivfSource) start() error {
	r, hdr, err := ivfreader.NewWith(&ivfFrameLimit{r: s.in, max: maxIVFFrame, next: ivfFileHeaderSize})
	if err != nil {
		return fmt.Errorf("%s: not an IVF file: %w", s.path, err)
	}
	s.r, s.hdr = r, hdr
	return nil
}

func (s *ivfSource) Track() push.Track {
	t := push.Track{Name: "video", Codec: push.VP8, Width: int(s.hdr.Width), Height: int(s.hdr.Height)}
	if s.hdr.TimebaseNumerator == 1 && s.hdr.TimebaseDenominator <= 240 {
		t.Framerate = float64(s.hdr.TimebaseDenominator) // ffmpeg writes 1/fps
	}
	return t
}

func (s *ivfSource) Next() (Frame, error) {
	data, h, err := s.r.ParseNextFrame()
	if errors.Is(err, io.EOF) {
		return Frame{}, io.EOF
	}
	if err != nil {
		return Frame{}, fmt.Errorf("%s: frame %d: %w", s.path, s.frame, err)
	}
	s.frame++
	num, den := uint64(s.hdr.TimebaseNumerator), uint64(s.hdr.TimebaseDenominator)
	// pion reports pts·den/num (rounded down); the pts is recovered rounding
	// up, then converted with the timebase num/den seconds.
	pts := (h.Timestamp*num + den - 1) / den
	raw := time.Duration(pts * num * uint64(time.Second) / den)
	// VP8's frame tag: bit 0 of the first byte is 0 for a key frame.
	key := len(data) > 0 && data[0]&1 == 0
	return Frame{TS: s.tl.at(raw), Key: key, Data: data}, nil
}

func (s *ivfSource) Rewind() error {
	if _, err := s.in.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: rewind: %w", s.path, err)
	}
	s.tl.rewind()
	return s.start()
}

func (s *ivfSource) Close() error { return s.in.Close() }

// oggSource reads Opus packets from Ogg. pion's reader returns whole page
// payloads; the page's lacing table, captured from the bytes it read, splits
// them into packets, timed from the granule positions.
type oggSource struct {
	path    string
	in      io.ReadSeekCloser
	cap     captureReader
	r       *oggreader.OggReader
	hdr     *oggreader.OggHeader
	pending []Frame
	partial []byte // a packet continued on the next page
	pos     int64  // samples (48 kHz) before the next packet
	timed   bool   // pos is set
	tl      timeline
}

// captureReader keeps what it read since the last reset: one Ogg page.
type captureReader struct {
	r   io.Reader
	buf []byte
}

func (c *captureReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.buf = append(c.buf, b[:n]...)
	return n, err
}

// OpenOgg reads Opus packets from an Ogg file, or from stdin for "-".
func OpenOgg(path string) (Source, error) {
	in, err := openInput(path)
	if err != nil {
		return nil, err
	}
	s, err := newOgg(path, in)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newOgg(path string, in io.ReadSeekCloser) (*oggSource, error) {
	s := &oggSource{path: path, in: in}
	if err := s.start(); err != nil {
		in.Close()
		return nil, err
	}
	return s, nil
}

func (s *oggSource) start() error {
	s.cap = captureReader{r: s.in}
	r, hdr, err := oggreader.NewWith(&s.cap)
	if err != nil {
		return fmt.Errorf("%s: not an Ogg Opus file: %w", s.path, err)
	}
	s.r, s.hdr, s.pending, s.partial, s.timed = r, hdr, nil, nil, false
	return nil
}

func (s *oggSource) Track() push.Track {
	// Opus always runs at 48 kHz inside; the header's rate is the input's.
	return push.Track{Name: "audio", Codec: push.Opus, SampleRate: 48000, Channels: int(s.hdr.Channels)}
}

func (s *oggSource) Next() (Frame, error) {
	for len(s.pending) == 0 {
		if err := s.readPage(); err != nil {
			return Frame{}, err
		}
	}
	f := s.pending[0]
	s.pending = s.pending[1:]
	return f, nil
}

// readPage splits the next page into packets and times them backwards from
// the page's granule position (the sample count at its last packet's end).
func (s *oggSource) readPage() error {
	s.cap.buf = s.cap.buf[:0]
	payload, h, err := s.r.ParseNextPage()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) && len(s.cap.buf) == 0 {
		return io.EOF
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	if len(s.cap.buf) < 27 || len(s.cap.buf) < 27+int(s.cap.buf[26]) {
		return fmt.Errorf("%s: short Ogg page", s.path)
	}
	lacing := s.cap.buf[27 : 27+int(s.cap.buf[26])]
	var packets [][]byte
	at, size := 0, 0
	for _, l := range lacing {
		size += int(l)
		if l < 255 {
			p := append(s.partial, payload[at:at+size]...)
			s.partial = nil
			packets = append(packets, p)
			at, size = at+size, 0
		}
	}
	if size > 0 {
		s.partial = append(s.partial, payload[at:at+size]...)
	}
	if len(packets) > 0 && strings.HasPrefix(string(packets[0]), "OpusTags") {
		return nil
	}
	// Packets are timed forward from the running sample count; the granule
	// position (the count at the page's last packet end) sets it at the first
	// page and after a gap. A last page whose granule is short of the packets
	// (end trimming, RFC 7845 §4.5) changes nothing.
	total := int64(0)
	for _, p := range packets {
		total += int64(opusSamples(p))
	}
	if g := int64(h.GranulePosition); !s.timed || g > s.pos+total {
		s.pos, s.timed = max(g-total, 0), true
	}
	frames := make([]Frame, len(packets))
	for i, p := range packets {
		// Pre-skip is left to the decoder (RTP has no way to say it): the
		// first packet is at 0 like the first video frame.
		frames[i] = Frame{TS: s.tl.at(time.Duration(s.pos) * time.Second / 48000), Key: true, Data: p}
		s.pos += int64(opusSamples(p))
	}
	s.pending = frames
	return nil
}

// opusSamples is a packet's duration at 48 kHz from its TOC byte (RFC 6716 §3.1).
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := int(toc >> 3)
	var per int // samples per frame at 48 kHz
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		per = []int{480, 960, 1920, 2880}[cfg%4]
	case cfg < 16: // hybrid: 10, 20 ms
		per = []int{480, 960}[cfg%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		per = []int{120, 240, 480, 960}[cfg%4]
	}
	switch toc & 3 {
	case 0:
		return per
	case 1, 2:
		return 2 * per
	}
	if len(p) < 2 {
		return 0
	}
	return per * int(p[1]&0x3f)
}

func (s *oggSource) Rewind() error {
	if _, err := s.in.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: rewind: %w", s.path, err)
	}
	s.tl.rewind()
	return s.start()
}

func (s *oggSource) Close() error { return s.in.Close() }
