package gateway

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/internal/medialink"
)

// recordingBinding is a viewer's side of a local track: pion calls WriteRTP on
// it for every packet the track writes.
type recordingBinding struct {
	mu   sync.Mutex
	seqs []uint16
}

func (r *recordingBinding) WriteRTP(h *rtp.Header, _ []byte) (int, error) {
	r.mu.Lock()
	r.seqs = append(r.seqs, h.SequenceNumber)
	r.mu.Unlock()
	return 0, nil
}

func (r *recordingBinding) Write(b []byte) (int, error) { return len(b), nil }

func (r *recordingBinding) got() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16(nil), r.seqs...)
}

// trackContext binds a local track to a recordingBinding.
type trackContext struct{ w *recordingBinding }

func (c trackContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}}
}
func (c trackContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c trackContext) SSRC() webrtc.SSRC                                      { return 1 }
func (c trackContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c trackContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c trackContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c trackContext) ID() string                                             { return "test" }
func (c trackContext) RTCPReader() interceptor.RTCPReader                     { return nil }

// A subscription delivers every packet, in order, whether it fans out on the
// media goroutine (few viewers) or hands packets to the track's goroutine (many),
// and when it switches between the two as viewers come and go.
func TestASubscriptionDeliversEveryPacketInOrderWithFewOrManyViewers(t *testing.T) {
	for _, viewers := range []int{1, inlineViewers, inlineViewers + 1, 100} {
		g := &Gateway{}
		g.m = newGWMetrics(metrics.NewSet(), g)
		ctx, cancel := context.WithCancel(context.Background())
		s := &subscription{g: g, stream: "s", viewers: map[*viewer]struct{}{}, ready: make(chan struct{})}
		s.ctx, s.cancel = context.WithCancel(ctx)
		for range viewers {
			s.viewers[&viewer{}] = struct{}{}
		}
		s.setTracks([]medialink.Track{{Index: 0, Kind: "video", MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}, 1)
		rec := &recordingBinding{}
		if _, err := s.local[0].Bind(trackContext{rec}); err != nil {
			t.Fatal(err)
		}
		const n = 400
		for i := range n {
			if i == n/2 { // the audience changes mid-stream
				if viewers > inlineViewers {
					s.mu.Lock()
					s.viewers = map[*viewer]struct{}{{}: {}}
					s.mu.Unlock()
				} else {
					s.mu.Lock()
					for range inlineViewers + 1 {
						s.viewers[&viewer{}] = struct{}{}
					}
					s.mu.Unlock()
				}
			}
			pkt := make([]byte, 1+12+100)
			pkt[0] = medialink.Header(medialink.TypeRTP, 0)
			pkt[1] = 0x80
			pkt[2] = 96
			binary.BigEndian.PutUint16(pkt[3:5], uint16(1000+i))
			s.onPacket(pkt)
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the track's goroutine run
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(rec.got()) < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		got := rec.got()
		if len(got) != n {
			t.Errorf("%d viewers: %d of %d packets written to the viewers", viewers, len(got), n)
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]+1 {
				t.Errorf("%d viewers: packet %d written after %d", viewers, got[i], got[i-1])
				break
			}
		}
		cancel()
		g.wg.Wait()
	}
}
