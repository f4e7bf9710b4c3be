// Package egress turns a stream's RTP, as the session core fans it out, into
// hang tracks for MoQ viewers: frames built once per track with pion's
// samplebuilder, a group per keyframe, the current group kept for late
// joiners, each object offered to every viewer of the track, and the hang
// catalog of the tracks. Package moq answers the viewers' requests and owns
// their sessions; this package knows nothing of requests.
package egress

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// Bounds on the group a track keeps for late joiners: past them the group is
// no longer kept and a joiner waits for the next keyframe. A viewer's queue
// should take MaxHeldObjects, so a late joiner gets the whole group.
const (
	MaxHeldObjects = 1024
	maxHeldBytes   = 8 << 20
)

// Object is one MoQT object of a served track: a hang frame (or, on the
// catalog track, the catalog JSON) at its group and object id.
type Object struct {
	Group, ID uint64
	Payload   []byte
}

// Viewer is one subscription to a served track.
type Viewer interface {
	// Offer queues an object without blocking (it is called under the
	// sink's lock) and reports whether it was taken. A viewer that does not
	// take one gets nothing more of that group.
	Offer(o Object) bool
	// End ends the viewer: the stream is over.
	End(reason string)
}

// Config is what a Sink needs from its host.
type Config struct {
	Stream string
	Log    *slog.Logger
	// Keyframe asks the publisher for a keyframe on a track (nil: never). It
	// must not block; it is called without the sink's lock.
	Keyframe func(track uint8)
	// Dropped counts objects a viewer did not get, and frames lost to
	// missing packets.
	Dropped func()
}

// member is a viewer's state in the sink.
type member struct {
	dropping bool // the rest of the current group is dropped
}

// Sink is a stream's MoQ viewers on this gateway, the session.Sink of its
// subscription for protocol "moq": it depacketizes each track's RTP into
// frames once (pion's samplebuilder), groups them from keyframe to keyframe,
// keeps the current group for late joiners, and hands each object to every
// viewer of the track. It serves the hang catalog built from the tracks.
type Sink struct {
	cfg Config

	mu      sync.Mutex
	tracks  [medialink.MaxTracks]*outTrack
	names   map[string]*outTrack
	order   []*outTrack // in the order the tracks came: names and catalog follow it
	catalog Object      // the current catalog, a group of one object
	catSubs map[Viewer]*member
	ended   bool
	kf      []uint8 // tracks to ask a keyframe of once k.mu is released
}

// outTrack is one served track: its frame builder and its current group.
type outTrack struct {
	name     string
	codec    string // the WebCodecs codec string of the catalog
	info     medialink.Track
	audio    bool
	sb       *samplebuilder.SampleBuilder
	keyframe func([]byte) bool
	ts       tsUnwrap
	seq      seqTracker
	maxLate  uint16
	// flush releases a frame at its last packet. Not for H.264: Flush there
	// splits an access unit of STAP-A and FU-A packets in two (pion rtp
	// v1.10.6), so an H.264 frame leaves when the next frame's first packet
	// comes.
	flush bool

	group   uint64 // the current group's id
	started bool   // a group is open (its keyframe was seen)
	next    uint64 // the next object id in the group
	held    []Object
	heldLen int
	holding bool // the current group is kept whole for late joiners
	viewers map[Viewer]*member
}

// New makes the sink of a stream.
func New(cfg Config) *Sink {
	if cfg.Dropped == nil {
		cfg.Dropped = func() {}
	}
	k := &Sink{cfg: cfg, names: map[string]*outTrack{}, catSubs: map[Viewer]*member{}}
	k.catalog = Object{Payload: k.buildCatalog()}
	return k
}

// AddTrack implements session.Sink: a track whose codec a hang viewer decodes
// (VP8, H.264, Opus) is served, named by its kind ("video", "audio"; a second
// one of a kind "video2", …); others are left out of the catalog.
func (k *Sink) AddTrack(t medialink.Track) {
	if int(t.Index) >= medialink.MaxTracks {
		return
	}
	ot, err := newOutTrack(t)
	if err != nil {
		k.cfg.Log.Info("moq: track not served to MoQ viewers", "stream", k.cfg.Stream, "track", t.Index, "error", err)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tracks[t.Index] != nil || k.ended {
		return
	}
	ot.name = t.Kind
	for n := 2; k.names[ot.name] != nil; n++ {
		ot.name = fmt.Sprintf("%s%d", t.Kind, n)
	}
	k.tracks[t.Index] = ot
	k.names[ot.name] = ot
	k.order = append(k.order, ot)
	k.catalog = Object{Group: k.catalog.Group + 1, Payload: k.buildCatalog()}
	for v, m := range k.catSubs {
		k.offer(v, m, k.catalog)
	}
}

// newOutTrack picks a track's depacketizer and catalog codec.
func newOutTrack(t medialink.Track) (*outTrack, error) {
	ot := &outTrack{info: t, viewers: map[Viewer]*member{}}
	switch strings.ToLower(t.MimeType) {
	case "video/vp8":
		ot.codec, ot.keyframe, ot.flush = "vp8", vp8Keyframe, true
		ot.maxLate = 100
		ot.sb = samplebuilder.New(ot.maxLate, &codecs.VP8Packet{}, t.ClockRate)
	case "video/h264":
		ot.codec, ot.keyframe = "avc1."+profileLevelID(t.SDPFmtpLine), h264Keyframe
		ot.maxLate = 100
		ot.sb = samplebuilder.New(ot.maxLate, &codecs.H264Packet{}, t.ClockRate)
	case "audio/opus":
		ot.codec, ot.audio, ot.flush = "opus", true, true
		ot.maxLate = 25
		ot.sb = samplebuilder.New(ot.maxLate, &codecs.OpusPacket{}, t.ClockRate)
	default:
		return nil, fmt.Errorf("codec %s is not served over MoQ (VP8, H.264 and Opus are)", t.MimeType)
	}
	if t.ClockRate == 0 {
		return nil, fmt.Errorf("track %d has no clock rate", t.Index)
	}
	return ot, nil
}

// profileLevelID is the fmtp's H.264 profile-level-id, or Constrained
// Baseline 3.1 (what WebRTC offers first) when it has none.
func profileLevelID(fmtp string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && strings.EqualFold(k, "profile-level-id") && len(v) == 6 {
			return strings.ToLower(v)
		}
	}
	return "42e01f"
}

// buildCatalog is the hang catalog of the served tracks; k.mu is held (or k
// is new).
func (k *Sink) buildCatalog() []byte {
	var c hang.Catalog
	for _, t := range k.order {
		if t.audio {
			if c.Audio == nil {
				c.Audio = &hang.AudioSection{Renditions: map[string]hang.AudioConfig{}}
			}
			ch := uint64(t.info.Channels)
			if ch == 0 {
				ch = 2
			}
			c.Audio.Renditions[t.name] = hang.AudioConfig{Codec: t.codec, SampleRate: uint64(t.info.ClockRate), NumberOfChannels: ch}
			continue
		}
		if c.Video == nil {
			c.Video = &hang.VideoSection{Renditions: map[string]hang.VideoConfig{}}
		}
		c.Video.Renditions[t.name] = hang.VideoConfig{Codec: t.codec}
	}
	b, err := c.Marshal()
	if err != nil {
		// Only our own names and codec strings go in: this is a bug, and an
		// empty catalog is what a viewer can still read.
		k.cfg.Log.Error("moq: catalog", "stream", k.cfg.Stream, "error", err)
		return []byte("{}")
	}
	return b
}

// WriteRTP implements session.Sink: the packet goes to the track's frame
// builder, and each frame it completes to the track's viewers.
func (k *Sink) WriteRTP(track uint8, pkt *rtp.Packet) int {
	if int(track) >= medialink.MaxTracks {
		return 0
	}
	// The samplebuilder keeps packets until their frame is complete; the
	// subscription's packet does not outlive this call.
	cp := pkt.Clone()
	k.mu.Lock()
	defer k.unlock()
	t := k.tracks[track]
	if t == nil || k.ended {
		return 0
	}
	t.sb.Push(cp)
	if t.seq.complete(cp.SequenceNumber, t.audio || cp.Marker, t.maxLate) && t.flush {
		// samplebuilder holds a finished frame until the next packet comes
		// (one frame interval late); with nothing missing before it, it is
		// released now.
		t.sb.Flush()
	}
	for s := t.sb.Pop(); s != nil; s = t.sb.Pop() {
		// Not s.PrevDroppedPackets: Flush counts packets it discards after a
		// frame as dropped. The tracker knows what was given up on.
		k.frame(t, s.Data, s.PacketTimestamp, t.seq.takeLost())
	}
	return len(t.viewers)
}

// frame groups one frame: a keyframe (every audio frame) opens a group; a
// video frame after a loss closes the group until the next keyframe, which
// is asked for.
func (k *Sink) frame(t *outTrack, data []byte, ts uint32, lost bool) {
	us := t.ts.micros(ts, t.info.ClockRate)
	key := t.audio || t.keyframe(data)
	switch {
	case key:
		if t.started {
			t.group++
		}
		t.started, t.next, t.holding = true, 0, true
		t.held, t.heldLen = t.held[:0], 0
	case lost && t.started:
		t.started = false
		t.group++
		k.cfg.Dropped()
		k.keyframe(t.info.Index)
		return
	case !t.started:
		return
	}
	o := Object{Group: t.group, ID: t.next, Payload: hang.Frame{TimestampMicros: us, Payload: data}.Append(nil)}
	t.next++
	if t.holding {
		if len(t.held) < MaxHeldObjects && t.heldLen+len(o.Payload) <= maxHeldBytes {
			t.held = append(t.held, o)
			t.heldLen += len(o.Payload)
		} else {
			t.holding, t.held, t.heldLen = false, nil, 0
		}
	}
	for v, m := range t.viewers {
		k.offer(v, m, o)
	}
}

// offer hands o to a viewer unless it is dropping the rest of o's group.
func (k *Sink) offer(v Viewer, m *member, o Object) {
	if o.ID == 0 {
		m.dropping = false
	}
	if m.dropping || !v.Offer(o) {
		m.dropping = true
		k.cfg.Dropped()
	}
}

// End implements session.Sink: the stream is over for every viewer.
func (k *Sink) End(reason string) {
	k.mu.Lock()
	k.ended = true
	var all []Viewer
	for v := range k.catSubs {
		all = append(all, v)
	}
	for _, t := range k.order {
		for v := range t.viewers {
			all = append(all, v)
		}
	}
	k.mu.Unlock()
	for _, v := range all {
		v.End(reason)
	}
}

// Attach adds a viewer of a track (name "catalog.json" for the catalog) and
// offers what it gets at once: the catalog, or the current group from its
// keyframe. It reports false when the track is not served or the stream has
// ended.
func (k *Sink) Attach(v Viewer, name string) bool {
	k.mu.Lock()
	defer k.unlock()
	if k.ended {
		return false
	}
	m := &member{}
	if name == hang.CatalogTrack {
		k.catSubs[v] = m
		k.offer(v, m, k.catalog)
		return true
	}
	t := k.names[name]
	if t == nil {
		return false
	}
	t.viewers[v] = m
	if t.started && t.holding {
		for _, o := range t.held {
			k.offer(v, m, o)
		}
	} else {
		// The current group's start is gone: the viewer waits for the next.
		m.dropping = true
		if !t.audio {
			k.keyframe(t.info.Index)
		}
	}
	return true
}

// TrackState is what a SUBSCRIBE's answer says of a served track.
type TrackState struct {
	Audio bool
	// Content says the track has objects; Group and Object are the largest.
	Content       bool
	Group, Object uint64
}

// Track reports whether a track is served, and its state.
func (k *Sink) Track(name string) (TrackState, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if name == hang.CatalogTrack {
		return TrackState{Content: true, Group: k.catalog.Group}, true
	}
	t := k.names[name]
	if t == nil {
		return TrackState{}, false
	}
	if !t.started || t.next == 0 {
		return TrackState{Audio: t.audio}, true
	}
	return TrackState{Audio: t.audio, Content: true, Group: t.group, Object: t.next - 1}, true
}

// keyframe notes a keyframe request for k.unlock to send: the subscription
// takes its own lock, which it holds while it calls AddTrack (so k.mu must
// not be held when it is called).
func (k *Sink) keyframe(track uint8) {
	if k.cfg.Keyframe != nil && !slices.Contains(k.kf, track) {
		k.kf = append(k.kf, track)
	}
}

// unlock releases k.mu and sends the keyframe requests noted meanwhile.
func (k *Sink) unlock() {
	kf := k.kf
	k.kf = nil
	k.mu.Unlock()
	for _, t := range kf {
		k.cfg.Keyframe(t)
	}
}

// Detach removes a viewer.
func (k *Sink) Detach(v Viewer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.catSubs, v)
	for _, t := range k.order {
		delete(t.viewers, v)
	}
}

// vp8Keyframe reads the VP8 frame tag's inverse key frame bit (RFC 6386 §9.1).
func vp8Keyframe(f []byte) bool { return len(f) > 0 && f[0]&1 == 0 }

// h264Keyframe reports whether an Annex B access unit holds an IDR slice.
func h264Keyframe(au []byte) bool {
	for i := 0; i+3 < len(au); i++ {
		if au[i] == 0 && au[i+1] == 0 && au[i+2] == 1 {
			if au[i+3]&0x1f == 5 {
				return true
			}
			i += 2
		}
	}
	return false
}

// tsUnwrap turns 32-bit RTP timestamps into microseconds since the first.
type tsUnwrap struct {
	started bool
	first   uint32
	last    uint32
	ext     int64 // last, extended past wraps, relative to first
}

func (u *tsUnwrap) micros(ts, clock uint32) uint64 {
	if !u.started {
		u.started, u.first, u.last = true, ts, ts
		return 0
	}
	u.ext += int64(int32(ts - u.last))
	u.last = ts
	if u.ext < 0 {
		return 0 // reordered before the first frame
	}
	return uint64(u.ext) * 1_000_000 / uint64(clock)
}

// seqTracker tells when every packet up to a frame's last has arrived, so
// the frame can be released without waiting for the next one.
type seqTracker struct {
	started bool
	next    uint16 // the sequence number after the highest seen
	holes   int    // packets missing below next
	holeAt  uint16 // the highest sequence number when the last hole opened
	lost    bool   // holes were given up on since the last frame
}

// takeLost reports (once) whether packets were given up on.
func (q *seqTracker) takeLost() bool {
	l := q.lost
	q.lost = false
	return l
}

// complete records seq and reports whether a frame ending at it (tail) is
// whole with nothing missing before it. Holes older than maxLate packets
// are forgotten: the samplebuilder has given up on them.
func (q *seqTracker) complete(seq uint16, tail bool, maxLate uint16) bool {
	switch d := seq - q.next; {
	case !q.started:
		q.started, q.next = true, seq+1
	case d == 0:
		q.next = seq + 1
	case d < 0x8000: // ahead: the packets between are missing
		q.holes += int(d)
		q.next, q.holeAt = seq+1, seq
	default: // late: a missing one, or a duplicate
		if q.holes > 0 {
			q.holes--
		}
	}
	if q.holes > 0 && q.next-1-q.holeAt > maxLate {
		q.holes, q.lost = 0, true
	}
	return tail && q.holes == 0 && seq == q.next-1
}
