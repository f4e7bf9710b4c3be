package session

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/rtp"

	"github.com/sluicegw/sluice/internal/medialink"
)

// recordingSink is a protocol's viewers as the core sees them: it records the
// sequence numbers it is given.
type recordingSink struct {
	mu     sync.Mutex
	tracks []medialink.Track
	seqs   []uint16
	ended  string
}

func (r *recordingSink) AddTrack(t medialink.Track) {
	r.mu.Lock()
	r.tracks = append(r.tracks, t)
	r.mu.Unlock()
}

func (r *recordingSink) WriteRTP(_ uint8, pkt *rtp.Packet) int {
	r.mu.Lock()
	r.seqs = append(r.seqs, pkt.SequenceNumber)
	r.mu.Unlock()
	return 1
}

func (r *recordingSink) End(reason string) {
	r.mu.Lock()
	r.ended = reason
	r.mu.Unlock()
}

func (r *recordingSink) got() []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint16(nil), r.seqs...)
}

func testCore() *Core {
	c := &Core{log: slog.New(slog.DiscardHandler), subs: map[string]*Subscription{}, pubs: map[string]*Publication{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.m = newCoreMetrics(metrics.NewSet(), c)
	return c
}

func framedRTP(track uint8, seq uint16) []byte {
	pkt := make([]byte, 1+12+100)
	pkt[0] = medialink.Header(medialink.TypeRTP, track)
	pkt[1] = 0x80
	pkt[2] = 96
	binary.BigEndian.PutUint16(pkt[3:5], seq)
	return pkt
}

// A subscription delivers every packet, in order, whether it fans out on the
// media goroutine (few viewers) or hands packets to the track's goroutine (many),
// and when it switches between the two as viewers come and go.
func TestASubscriptionDeliversEveryPacketInOrderWithFewOrManyViewers(t *testing.T) {
	for _, viewers := range []int{1, inlineViewers, inlineViewers + 1, 100} {
		c := testCore()
		s := c.newSubscription("s", placement{})
		s.viewers = viewers
		rec := &recordingSink{}
		s.Sink("test", func() Sink { return rec })
		s.setTracks([]medialink.Track{{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000}}, 1)
		const n = 400
		for i := range n {
			if i == n/2 { // the audience changes mid-stream
				s.mu.Lock()
				if viewers > inlineViewers {
					s.viewers = 1
				} else {
					s.viewers = inlineViewers + 1
				}
				s.mu.Unlock()
			}
			s.onPacket(framedRTP(0, uint16(1000+i)))
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
		c.cancel()
		s.cancel()
		c.wg.Wait()
	}
}

// A sink that joins a subscription late is told of the tracks already known, and
// every sink of the subscription gets every packet: a stream watched over two
// protocols at once is parsed once and delivered to both.
func TestEverySinkOfAStreamGetsItsTracksAndPacketsWhenItJoins(t *testing.T) {
	c := testCore()
	defer c.cancel()
	s := c.newSubscription("s", placement{})
	s.viewers = 2
	first := &recordingSink{}
	s.Sink("first", func() Sink { return first })
	s.setTracks([]medialink.Track{{Index: 0, Kind: "video"}, {Index: 1, Kind: "audio"}}, 2)
	late := &recordingSink{}
	if k := s.Sink("late", func() Sink { return late }); k != late {
		t.Fatal("sink made twice")
	}
	if again := s.Sink("late", func() Sink { t.Fatal("a second sink for one protocol"); return nil }); again != late {
		t.Fatal("sink not kept")
	}
	if len(late.tracks) != 2 || late.tracks[1].Kind != "audio" {
		t.Fatalf("late sink was told of %+v", late.tracks)
	}
	for i := range 10 {
		s.onPacket(framedRTP(0, uint16(i)))
	}
	if len(first.got()) != 10 || len(late.got()) != 10 {
		t.Fatalf("first sink got %d packets, late sink %d, of 10", len(first.got()), len(late.got()))
	}
	s.cancel()
	s.end()
	if first.ended == "" || late.ended == "" {
		t.Fatalf("a sink was not ended with its stream: %q %q", first.ended, late.ended)
	}
}

// The gap detector asks the node again for packets the link lost, once each, and
// leaves reordering and retransmissions alone.
func TestTheGapDetectorNACKsWhatTheLinkLostOnce(t *testing.T) {
	var d gapDetector
	rtpSeq := func(seq uint16) []byte { return framedRTP(0, seq)[1:] }
	if d.check(0, rtpSeq(10)) != nil || d.check(0, rtpSeq(11)) != nil {
		t.Fatal("NACK without a gap")
	}
	nack := d.check(0, rtpSeq(14))
	typ, track, payload, err := medialink.ParsePacket(nack)
	if err != nil || typ != medialink.TypeNACK || track != 0 || len(payload) != 4 ||
		binary.BigEndian.Uint16(payload) != 12 || binary.BigEndian.Uint16(payload[2:]) != 13 {
		t.Fatalf("NACK for 12, 13: %x %v", nack, err)
	}
	if d.check(0, rtpSeq(12)) != nil || d.check(0, rtpSeq(13)) != nil {
		t.Fatal("a late retransmission was NACKed again")
	}
	if d.check(0, rtpSeq(15)) != nil {
		t.Fatal("NACK after the retransmissions")
	}
	if d.check(0, rtpSeq(15+200)) != nil {
		t.Fatal("a jump over 64 is a new start, not a gap to fill")
	}
}
