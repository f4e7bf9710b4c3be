package session

import (
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/sluicegw/sluice/internal/medialink"
)

// The session core. A stream on this gateway has at most one publication — a
// Source (a WHIP or MoQ publisher) feeding the stream's node over an uplink —
// and at most one subscription: a downlink from the node, fanned out to the
// Sinks of every protocol its local viewers use (WHEP today). admission
// (admission.go), placement (placement.go) and the node link (nodelink.go) are
// the same for every protocol; a protocol adds only a Source or a Sink.

// Source is a protocol's publisher of one stream. The core calls it from its own
// goroutines; it must not block.
type Source interface {
	// RequestKeyframe asks the publisher for a keyframe on a video track.
	RequestKeyframe(track uint8)
}

// Sink is one protocol's viewers of a stream on this gateway, all of them: it
// gets each packet once and delivers it to every viewer. Its calls come from the
// subscription's goroutines, one track's packets in order; they must not block.
type Sink interface {
	// AddTrack adds a track of the stream before its first packet.
	AddTrack(t medialink.Track)
	// WriteRTP delivers one packet of a track and reports how many viewers it
	// went to.
	WriteRTP(track uint8, pkt *rtp.Packet) int
	// End ends every viewer's session: the stream is over.
	End(reason string)
}

// rateMeter turns a byte counter into a bit rate, sampled at most once a second.
type rateMeter struct {
	mu        sync.Mutex
	lastBytes uint64
	lastAt    time.Time
	bps       float64
}

func (r *rateMeter) sample(total uint64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.lastAt.IsZero() {
		r.lastAt, r.lastBytes = now, total
		return 0
	}
	if d := now.Sub(r.lastAt); d >= time.Second {
		r.bps = float64(total-r.lastBytes) * 8 / d.Seconds()
		r.lastAt, r.lastBytes = now, total
	}
	return r.bps
}

// Stream is the publication's stream id.
func (p *Publication) Stream() string { return p.stream }

// Stream is the subscription's stream id.
func (s *Subscription) Stream() string { return s.stream }
