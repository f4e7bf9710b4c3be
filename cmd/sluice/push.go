package main

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/sluicegw/sluice/sdk/push"
)

const pushUsage = `Usage: sluice push --stream ID [--video FILE.ivf|-] [--audio FILE.ogg|-] [flags]

Pushes VP8 (IVF) and Opus (Ogg) to a gateway's MoQ endpoint over QUIC, in real
time from the files' timestamps. "-" reads stdin, e.g. a live encoder:
  ffmpeg -re -i input -c:v libvpx -deadline realtime -f ivf - | sluice push --stream cam1 --video -

Flags:
`

// runPush is `sluice push`: one line on stderr and a non-zero status say what
// failed.
func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, pushUsage); fs.PrintDefaults() }
	stream := fs.String("stream", "", "stream id to publish (required)")
	video := fs.String("video", "", "VP8 IVF file, or - for stdin")
	audio := fs.String("audio", "", "Opus Ogg file, or - for stdin")
	rawURL := fs.String("url", "moqt://127.0.0.1:4443", "the gateway's MoQ endpoint")
	loop := fs.Bool("loop", false, "repeat the files, timestamps continuing")
	token := fs.String("token", "", "auth token (sent as MoQT AUTHORIZATION_TOKEN)")
	certHash := fs.String("cert-sha256", "", "pin the server certificate by its hex SHA-256 (default on loopback: fetched from /certificate.sha256)")
	caFile := fs.String("ca", "", "PEM file of CA certificates to verify the server with")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
		fmt.Fprintln(stderr, "sluice push: "+msg)
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fail(2, "unexpected argument %q", fs.Arg(0))
	case *stream == "":
		return fail(2, "--stream is required")
	case *video == "" && *audio == "":
		return fail(2, "nothing to push: give --video, --audio or both")
	case *video == "-" && *audio == "-":
		return fail(2, "only one of --video and --audio can read stdin")
	case *loop && (*video == "-" || *audio == "-"):
		return fail(2, "--loop needs files, not stdin")
	case *certHash != "" && *caFile != "":
		return fail(2, "give --cert-sha256 or --ca, not both")
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "moqt" || u.Hostname() == "" {
		return fail(2, "--url %q: want moqt://host:port", *rawURL)
	}
	var sources []source
	for _, in := range []struct {
		path string
		open func(string) (source, error)
	}{{*video, openIVF}, {*audio, openOgg}} {
		if in.path == "" {
			continue
		}
		src, err := in.open(in.path)
		if err != nil {
			return fail(1, "%v", err)
		}
		defer src.Close()
		sources = append(sources, src)
	}
	opts := &push.Options{Token: *token, CertSHA256: *certHash}
	if err := trustFor(ctx, u, *caFile, opts); err != nil {
		return fail(1, "%v", err)
	}
	sent, elapsed, err := pushSources(ctx, u.String(), *stream, opts, sources, *loop)
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "sluice push: %s: %s in %.1fs\n", *stream, strings.Join(sent, ", "), elapsed.Seconds())
	return 0
}

// trustFor fills how the server's certificate is checked: a CA file, a given
// hash, or on loopback the hash `sluice dev` serves at /certificate.sha256.
func trustFor(ctx context.Context, u *url.URL, caFile string, opts *push.Options) error {
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca %s: no PEM certificates", caFile)
		}
		opts.RootCAs = pool
		return nil
	}
	if opts.CertSHA256 != "" {
		return nil
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil // verify the chain against the system roots
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	hashURL := "http://" + net.JoinHostPort(u.Hostname(), port) + "/certificate.sha256"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hashURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no gateway at %s: connection refused (start `sluice dev`, or point --url at a gateway)", u.Host)
		}
		return fmt.Errorf("fetch the certificate hash: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (pass --cert-sha256 or --ca)", hashURL, resp.Status)
	}
	opts.CertSHA256 = strings.TrimSpace(string(body))
	return nil
}

// pushSources publishes the sources as one broadcast and paces their frames
// in real time until they end (or ctx does).
func pushSources(ctx context.Context, rawURL, stream string, opts *push.Options, sources []source, loop bool) ([]string, time.Duration, error) {
	s, err := push.Dial(ctx, rawURL, opts)
	if err != nil {
		return nil, 0, err
	}
	defer s.Close()
	tracks := make([]push.Track, len(sources))
	for i, src := range sources {
		tracks[i] = src.Track()
	}
	b, err := s.Publish(ctx, stream, tracks...)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	counts := make([]int, len(sources))
	errs := make([]error, len(sources))
	for i, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = pace(ctx, b, tracks[i].Name, src, start, loop)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, elapsed, err
	}
	if err := b.Close(); err != nil {
		return nil, elapsed, err
	}
	if err := s.Close(); err != nil {
		return nil, elapsed, err
	}
	sent := make([]string, len(sources))
	for i := range sources {
		sent[i] = fmt.Sprintf("%d %s frames", counts[i], tracks[i].Name)
	}
	return sent, elapsed, nil
}

// pace writes src's frames when their timestamps fall due after start, as
// ffmpeg -re reads input; --loop continues the timestamps across repeats.
func pace(ctx context.Context, b *push.Broadcast, track string, src source, start time.Time, loop bool) (int, error) {
	n := 0
	for {
		f, err := src.Next()
		if errors.Is(err, io.EOF) {
			if !loop {
				return n, nil
			}
			if err := src.Rewind(); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		if wait := time.Until(start.Add(f.ts)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return n, nil
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return n, nil
		}
		if err := b.WriteFrame(track, f.ts, f.key, f.data); err != nil {
			if errors.Is(err, push.ErrNoKeyframe) {
				continue // a live input joined mid-GOP: wait for a keyframe
			}
			return n, err
		}
		n++
	}
}

// A source is one input file's frames with their presentation times.
type source interface {
	Track() push.Track
	// Next returns the next frame, io.EOF at the end of the input.
	Next() (frame, error)
	// Rewind starts the input again, timestamps continuing after the last frame.
	Rewind() error
	Close() error
}

type frame struct {
	ts   time.Duration
	key  bool
	data []byte
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

func openIVF(path string) (source, error) {
	in, err := openInput(path)
	if err != nil {
		return nil, fmt.Errorf("--video: %w", err)
	}
	return newIVFSource(path, in)
}

func newIVFSource(path string, in io.ReadSeekCloser) (*ivfSource, error) {
	s := &ivfSource{path: path, in: in}
	if err := s.start(); err != nil {
		in.Close()
		return nil, err
	}
	if s.hdr.FourCC != "VP80" {
		in.Close()
		return nil, fmt.Errorf("--video %s: IVF codec %q; sluice push sends VP8 (VP80)", path, s.hdr.FourCC)
	}
	return s, nil
}

func (s *ivfSource) start() error {
	r, hdr, err := ivfreader.NewWith(&ivfFrameLimit{r: s.in, max: maxIVFFrame, next: ivfFileHeaderSize})
	if err != nil {
		return fmt.Errorf("--video %s: not an IVF file: %w", s.path, err)
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

func (s *ivfSource) Next() (frame, error) {
	data, h, err := s.r.ParseNextFrame()
	if errors.Is(err, io.EOF) {
		return frame{}, io.EOF
	}
	if err != nil {
		return frame{}, fmt.Errorf("--video %s: frame %d: %w", s.path, s.frame, err)
	}
	s.frame++
	num, den := uint64(s.hdr.TimebaseNumerator), uint64(s.hdr.TimebaseDenominator)
	// pion reports pts·den/num (rounded down); the pts is recovered rounding
	// up, then converted with the timebase num/den seconds.
	pts := (h.Timestamp*num + den - 1) / den
	raw := time.Duration(pts * num * uint64(time.Second) / den)
	// VP8's frame tag: bit 0 of the first byte is 0 for a key frame.
	key := len(data) > 0 && data[0]&1 == 0
	return frame{ts: s.tl.at(raw), key: key, data: data}, nil
}

func (s *ivfSource) Rewind() error {
	if _, err := s.in.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("--video %s: rewind: %w", s.path, err)
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
	pending []frame
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

func openOgg(path string) (source, error) {
	in, err := openInput(path)
	if err != nil {
		return nil, fmt.Errorf("--audio: %w", err)
	}
	return newOggSource(path, in)
}

func newOggSource(path string, in io.ReadSeekCloser) (*oggSource, error) {
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
		return fmt.Errorf("--audio %s: not an Ogg Opus file: %w", s.path, err)
	}
	s.r, s.hdr, s.pending, s.partial, s.timed = r, hdr, nil, nil, false
	return nil
}

func (s *oggSource) Track() push.Track {
	// Opus always runs at 48 kHz inside; the header's rate is the input's.
	return push.Track{Name: "audio", Codec: push.Opus, SampleRate: 48000, Channels: int(s.hdr.Channels)}
}

func (s *oggSource) Next() (frame, error) {
	for len(s.pending) == 0 {
		if err := s.readPage(); err != nil {
			return frame{}, err
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
		return fmt.Errorf("--audio %s: %w", s.path, err)
	}
	if len(s.cap.buf) < 27 || len(s.cap.buf) < 27+int(s.cap.buf[26]) {
		return fmt.Errorf("--audio %s: short Ogg page", s.path)
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
	frames := make([]frame, len(packets))
	for i, p := range packets {
		// Pre-skip is left to the decoder (RTP has no way to say it): the
		// first packet is at 0 like the first video frame.
		frames[i] = frame{ts: s.tl.at(time.Duration(s.pos) * time.Second / 48000), key: true, data: p}
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
		return fmt.Errorf("--audio %s: rewind: %w", s.path, err)
	}
	s.tl.rewind()
	return s.start()
}

func (s *oggSource) Close() error { return s.in.Close() }
