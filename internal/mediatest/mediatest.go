// Package mediatest is a WHIP publisher and a WHEP viewer built on pion, for
// end-to-end tests and the `sluice bench` load generator. The publisher sends the
// known VP8 and Opus sequences in testdata/; the viewer reassembles what arrives so
// a test can compare it frame by frame.
package mediatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// LoadIVF reads every frame of a VP8 IVF file.
func LoadIVF(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, err
		}
		frames = append(frames, fr)
	}
}

// LoadOgg reads every Opus packet of an Ogg file (one packet per page, as the
// testdata files are written), skipping the two header pages.
func LoadOgg(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return nil, err
	}
	var pkts [][]byte
	for {
		p, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return pkts, nil
		}
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(p, []byte("OpusTags")) || bytes.HasPrefix(p, []byte("OpusHead")) {
			continue
		}
		pkts = append(pkts, p)
	}
}

// API returns a pion API for test peers: default codecs and interceptors, and
// loopback candidates (CI sandboxes may have only lo).
func API() (*webrtc.API, error) {
	return newAPI(webrtc.RegisterDefaultInterceptors)
}

// APIWithoutStats is API without pion's stats interceptor, whose per-packet
// bookkeeping (getStats) a load generator never reads. Its peers negotiate the
// same codecs, feedback and header extensions and send the same NACKs, receiver
// reports and transport-wide feedback as API's.
func APIWithoutStats() (*webrtc.API, error) {
	return newAPI(func(me *webrtc.MediaEngine, ir *interceptor.Registry) error {
		if err := webrtc.ConfigureNack(me, ir); err != nil {
			return err
		}
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return err
		}
		if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
			return err
		}
		return webrtc.ConfigureTWCCSender(me, ir)
	})
}

func newAPI(interceptors func(*webrtc.MediaEngine, *interceptor.Registry) error) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := interceptors(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Session is a WHIP or WHEP session as a client holds it.
type Session struct {
	PC       *webrtc.PeerConnection
	Location string
	base     string
}

// Close deletes the session on the server and closes the peer connection.
func (s *Session) Close() error {
	defer s.PC.Close()
	req, _ := http.NewRequest(http.MethodDelete, s.base+s.Location, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE %s: %s", s.Location, resp.Status)
	}
	return nil
}

// HTTPError is a non-201 answer to an offer.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Body) }

// Negotiate posts pc's offer to url and applies the answer. It sends the offer
// with all candidates, as simple WHIP clients do.
func Negotiate(ctx context.Context, pc *webrtc.PeerConnection, base, path string) (*Session, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return nil, &HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return nil, err
	}
	return &Session{PC: pc, Location: resp.Header.Get("Location"), base: base}, nil
}

// WaitConnected waits until the peer connection is connected.
func WaitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	done := make(chan struct{}, 1)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			select {
			case done <- struct{}{}:
			default:
			}
		}
	})
	if pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peer connection %s: %w", pc.ConnectionState(), ctx.Err())
	}
}

// Publisher is a WHIP client with a VP8 and an Opus track.
type Publisher struct {
	*Session
	Video, Audio *webrtc.TrackLocalStaticSample
}

// Publish opens a WHIP session for stream on the gateway at base (http://host:port).
func Publish(ctx context.Context, api *webrtc.API, base, stream string) (*Publisher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	video, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "sluice-test")
	audio, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "sluice-test")
	for _, t := range []webrtc.TrackLocal{video, audio} {
		if _, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	s, err := Negotiate(ctx, pc, base, "/whip/"+stream)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &Publisher{Session: s, Video: video, Audio: audio}, nil
}

// Send writes video frames at 30 fps and audio packets at 50 per second,
// interleaved in real time, until both are sent or ctx ends.
func (p *Publisher) Send(ctx context.Context, video, audio [][]byte) error {
	const vDur, aDur = time.Second / 30, 20 * time.Millisecond
	start := time.Now()
	vi, ai := 0, 0
	for vi < len(video) || ai < len(audio) {
		vAt := start.Add(time.Duration(vi) * vDur)
		aAt := start.Add(time.Duration(ai) * aDur)
		var err error
		if vi < len(video) && (ai >= len(audio) || !vAt.After(aAt)) {
			SleepUntil(ctx, vAt)
			err = p.Video.WriteSample(media.Sample{Data: video[vi], Duration: vDur})
			vi++
		} else {
			SleepUntil(ctx, aAt)
			err = p.Audio.WriteSample(media.Sample{Data: audio[ai], Duration: aDur})
			ai++
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// SleepUntil sleeps until t, or until ctx ends: paced senders keep their
// schedule from one start instead of drifting sleep by sleep.
func SleepUntil(ctx context.Context, t time.Time) {
	if d := time.Until(t); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
}

// Viewer is a WHEP client that reassembles the frames it receives.
type Viewer struct {
	*Session
	packets atomic.Int64 // RTP packets received, every track
	mu      sync.Mutex
	video   [][]byte
	audio   [][]byte
	codecs  []string // MIME types of the tracks received, in arrival order
}

// Play opens a WHEP session for stream and starts collecting frames.
func Play(ctx context.Context, api *webrtc.API, base, stream string) (*Viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	v := &Viewer{}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mime := t.Codec().MimeType
		v.mu.Lock()
		v.codecs = append(v.codecs, mime)
		v.mu.Unlock()
		dep, maxLate := depacketizer(mime)
		if dep == nil {
			return // a codec the viewer cannot reassemble: Codecs shows it
		}
		sb := samplebuilder.New(maxLate, dep, t.Codec().ClockRate)
		for {
			pkt, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			v.packets.Add(1)
			sb.Push(pkt)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				v.mu.Lock()
				if t.Kind() == webrtc.RTPCodecTypeAudio {
					v.audio = append(v.audio, s.Data)
				} else {
					v.video = append(v.video, s.Data)
				}
				v.mu.Unlock()
			}
		}
	})
	s, err := Negotiate(ctx, pc, base, "/whep/"+stream)
	if err != nil {
		pc.Close()
		return nil, err
	}
	v.Session = s
	return v, nil
}

// depacketizer reassembles frames of the codec named by mime (VP8 and Opus from
// the test files, H.264 from browsers' cameras), or is nil for any other, with
// how many packets the sample builder may hold while it waits for a late one.
// H.264 access units come out in Annex B (start codes before each NAL unit); a
// camera's keyframe can be a hundred packets or more, which the builder must
// hold whole to emit it.
func depacketizer(mime string) (dep rtp.Depacketizer, maxLate uint16) {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return &codecs.VP8Packet{}, 64
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return &codecs.H264Packet{}, 512
	case strings.EqualFold(mime, webrtc.MimeTypeOpus):
		return &codecs.OpusPacket{}, 64
	}
	return nil, 0
}

// Codecs returns the MIME types of the tracks received so far, in arrival order.
func (v *Viewer) Codecs() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.codecs...)
}

// Packets is the number of RTP packets received so far, on every track.
func (v *Viewer) Packets() int64 { return v.packets.Load() }

// Frames returns copies of the lists of video frames and audio packets received.
func (v *Viewer) Frames() (video, audio [][]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([][]byte(nil), v.video...), append([][]byte(nil), v.audio...)
}

// Match reports how many of want arrived in got, in order and byte for byte: got
// must be a subsequence of want. A received frame that was never sent, or that
// comes out of order, is an error.
func Match(want, got [][]byte) (matched int, err error) {
	next := 0
	for j, g := range got {
		i := next
		for i < len(want) && !bytes.Equal(want[i], g) {
			i++
		}
		if i == len(want) {
			return matched, fmt.Errorf("received frame %d (%d bytes) does not follow sent frame %d in the sent sequence: never sent, or out of order", j, len(g), next-1)
		}
		next = i + 1
		matched++
	}
	return matched, nil
}
