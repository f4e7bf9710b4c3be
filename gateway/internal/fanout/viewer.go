package fanout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/sluicegw/sluice/internal/rawudp"
)

// MaxTracks is how many tracks a group carries (the media link's limit).
const MaxTracks = 8

// Binding is one of a viewer's tracks: the stream's track index and the pion
// sender negotiated for it (its SSRC and payload type are the viewer's).
type Binding struct {
	Track  uint8
	Sender *webrtc.RTPSender
}

// Viewer is one viewer's state on the fan-out path: its SRTP context, where
// its packets go, and per track the header rewrite and what its sender
// reports count. A Viewer is made by Group.Attach and ends with Close.
type Viewer struct {
	g   *Group
	pc  *webrtc.PeerConnection
	dst atomic.Pointer[dest]

	mu     sync.Mutex // guards the fields below: the fan-out and the RTCP readers seal
	srtp   *srtp.Context
	hdr    rtp.Header // scratch for the sealer
	tracks [MaxTracks]viewerTrack

	retransmitted, unanswered atomic.Uint64
	remb                      atomic.Uint64 // the latest REMB estimate, bit/s
	twcc                      atomic.Uint64 // TWCC feedback packets read
	closed                    atomic.Bool
}

// dest is where a viewer's packets go: the socket and remote address of the
// ICE pair pion selected.
type dest struct {
	sock *Socket
	peer rawudp.Peer
}

// viewerTrack is what differs between viewers for one track.
type viewerTrack struct {
	bound          bool
	ssrc           uint32
	pt             uint8
	seqOff         uint16 // added to the source's sequence numbers
	tsOff          uint32 // added to the source's timestamps
	packets, bytes uint32 // sent, for sender reports (RFC 3550 §6.4.1)
	lastTS         uint32 // the latest RTP timestamp sent
	lastAt         int64  // when it was sent, unix nanoseconds
}

// Attach puts a connected viewer on the fan-out path: the viewer's SRTP keys
// are taken from its DTLS session, its destination from the selected ICE
// pair, and its SSRCs and payload types from its senders. Its RTCP is read
// until the peer connection closes: NACKs are answered from the group's
// history, keyframe requests go to onKeyframe (the caller rate-limits them),
// and REMB and TWCC feedback is kept. pc must be connected.
func (g *Group) Attach(pc *webrtc.PeerConnection, bindings []Binding, onKeyframe func(track uint8)) (*Viewer, error) {
	if len(bindings) == 0 {
		return nil, errors.New("fanout: a viewer with no tracks")
	}
	dt := bindings[0].Sender.Transport()
	ld := pc.CurrentLocalDescription()
	if dt == nil || ld == nil {
		return nil, errors.New("fanout: the viewer's session is not negotiated")
	}
	sc, err := sealer(dt, isDTLSClient(ld.SDP))
	if err != nil {
		return nil, err
	}
	v := &Viewer{g: g, pc: pc, srtp: sc}
	ice := dt.ICETransport()
	pair, err := ice.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, fmt.Errorf("fanout: no selected ICE pair: %w", err)
	}
	if err := v.setDest(pair); err != nil {
		return nil, err
	}
	ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		if err := v.setDest(p); err != nil {
			g.log.Warn("fanout: ICE pair", "err", err)
		}
	})
	for _, b := range bindings {
		p := b.Sender.GetParameters()
		if int(b.Track) >= MaxTracks || len(p.Encodings) == 0 || len(p.Codecs) == 0 {
			return nil, fmt.Errorf("fanout: track %d is not negotiated", b.Track)
		}
		lt, ok := b.Sender.Track().(*webrtc.TrackLocalStaticRTP)
		if !ok {
			return nil, fmt.Errorf("fanout: track %d has no local track to send as", b.Track)
		}
		pt, ok := payloadType(p.Codecs, lt.Codec())
		if !ok {
			return nil, fmt.Errorf("fanout: track %d's codec %s was not negotiated", b.Track, lt.Codec().MimeType)
		}
		v.tracks[b.Track] = viewerTrack{bound: true, ssrc: uint32(p.Encodings[0].SSRC), pt: uint8(pt)}
	}
	for _, b := range bindings {
		go v.readRTCP(b.Track, b.Sender, onKeyframe)
	}
	g.add(v)
	return v, nil
}

// isDTLSClient reports whether the local description takes the DTLS client
// role (RFC 8842: setup:active).
func isDTLSClient(sdp string) bool { return strings.Contains(sdp, "a=setup:active") }

// setDest sends the viewer's packets on the ICE socket of the pair's local
// candidate, to its remote candidate.
func (v *Viewer) setDest(p *webrtc.ICECandidatePair) error {
	if p == nil || p.Local == nil || p.Remote == nil {
		return errors.New("fanout: an empty ICE pair")
	}
	local, err1 := netip.ParseAddr(p.Local.Address)
	remote, err2 := netip.ParseAddr(p.Remote.Address)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("fanout: ICE pair %s → %s: %w", p.Local.Address, p.Remote.Address, err)
	}
	to := netip.AddrPortFrom(remote.Unmap(), p.Remote.Port)
	sock := v.g.socket(netip.AddrPortFrom(local.Unmap(), p.Local.Port), to)
	if sock == nil {
		return fmt.Errorf("fanout: no ICE socket on %s:%d", p.Local.Address, p.Local.Port)
	}
	peer, err := sock.raw.Peer(to)
	if err != nil {
		return fmt.Errorf("fanout: ICE pair %s → %s: %w", p.Local.Address, p.Remote.Address, err)
	}
	v.dst.Store(&dest{sock: sock, peer: peer})
	return nil
}

// seal writes the viewer's copy of the packet plain (an RTP packet of track,
// as the source sent it) into out: the header rewritten for the viewer and
// the whole sealed with its SRTP context. It returns the length, or 0 when
// the viewer does not carry the track. now is the send time (unix ns) of a
// live packet, which the sender reports map; 0 marks a retransmission.
func (v *Viewer) seal(out, plain []byte, track uint8, now int64) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := &v.tracks[track]
	if !t.bound || len(plain) < 12 || len(plain)+srtpOverhead > len(out) {
		return 0
	}
	n := copy(out, plain)
	ts := rewrite(out, t)
	sealed, err := v.srtp.EncryptRTP(out[:0], out[:n], &v.hdr)
	if err != nil {
		return 0
	}
	if now != 0 {
		t.packets++
		t.bytes += uint32(n - 12)
		t.lastTS, t.lastAt = ts, now
	}
	return len(sealed)
}

// srtpOverhead is the most the SRTP tag adds (16 bytes for AES-GCM, 10 for
// HMAC-SHA1-80).
const srtpOverhead = 16

// rewrite gives the RTP header in pkt the viewer's payload type (the marker
// bit kept), SSRC and sequence and timestamp offsets, and returns the
// timestamp.
func rewrite(pkt []byte, t *viewerTrack) uint32 {
	pkt[1] = pkt[1]&0x80 | t.pt&0x7f
	binary.BigEndian.PutUint16(pkt[2:], binary.BigEndian.Uint16(pkt[2:])+t.seqOff)
	ts := binary.BigEndian.Uint32(pkt[4:]) + t.tsOff
	binary.BigEndian.PutUint32(pkt[4:], ts)
	binary.BigEndian.PutUint32(pkt[8:], t.ssrc)
	return ts
}

// readRTCP reads the RTCP the viewer sends about one of its tracks until its
// peer connection closes.
func (v *Viewer) readRTCP(track uint8, s *webrtc.RTPSender, onKeyframe func(uint8)) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				onKeyframe(track)
			case *rtcp.TransportLayerNack:
				v.answerNACK(track, p)
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				v.remb.Store(uint64(p.Bitrate))
			case *rtcp.TransportLayerCC:
				v.twcc.Add(1)
			}
		}
	}
}

// answerNACK resends the packets a viewer asks for from the track's shared
// history, on the viewer's own goroutine: a lossy viewer's repairs never wait
// behind, or hold up, the other viewers' live packets.
func (v *Viewer) answerNACK(track uint8, n *rtcp.TransportLayerNack) {
	h := v.g.history(track)
	d := v.dst.Load()
	if h == nil || d == nil {
		return
	}
	var plain, out [maxPacket]byte
	for _, pair := range n.Nacks {
		for _, seq := range pair.PacketList() {
			v.mu.Lock()
			off := v.tracks[track].seqOff
			v.mu.Unlock()
			m := h.get(seq-off, plain[:])
			if m == 0 {
				v.unanswered.Add(1)
				continue
			}
			k := v.seal(out[:], plain[:m], track, 0)
			if k == 0 {
				continue
			}
			if err := d.sock.raw.Send(out[:k], &d.peer); err == nil {
				v.retransmitted.Add(1)
			}
		}
	}
}

// sendReports sends one RTCP sender report per track the viewer has been sent
// packets on, with the wall clock ↔ RTP time mapping of now.
func (v *Viewer) sendReports(now time.Time) {
	var pkts []rtcp.Packet
	v.mu.Lock()
	for i := range v.tracks {
		t := &v.tracks[i]
		if !t.bound || t.packets == 0 {
			continue
		}
		clock := v.g.clockRate(uint8(i))
		since := max(now.UnixNano()-t.lastAt, 0) // a wall clock stepped back maps to the last packet
		rtpNow := t.lastTS + uint32(uint64(since)*uint64(clock)/1e9)
		pkts = append(pkts, &rtcp.SenderReport{SSRC: t.ssrc, NTPTime: ntpTime(now), RTPTime: rtpNow,
			PacketCount: t.packets, OctetCount: t.bytes})
	}
	v.mu.Unlock()
	if len(pkts) > 0 {
		_ = v.pc.WriteRTCP(pkts)
	}
}

// ntpTime is t in NTP's 64-bit fixed point (RFC 3550 §4).
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800
	s := uint64(t.Unix()) + unixToNTP
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | frac
}

// Retransmitted counts the packets resent to the viewer on its NACKs, and
// Unanswered the ones it asked for that the history no longer held.
func (v *Viewer) Retransmitted() uint64 { return v.retransmitted.Load() }

// Unanswered counts NACKed packets the shared history no longer held.
func (v *Viewer) Unanswered() uint64 { return v.unanswered.Load() }

// REMB is the viewer's latest receiver estimate of its bandwidth (bit/s), 0
// until it sends one.
func (v *Viewer) REMB() uint64 { return v.remb.Load() }

// Close takes the viewer off the fan-out path. It does not close the peer
// connection, which is the caller's. It is safe to call twice.
func (v *Viewer) Close() {
	if v.closed.Swap(true) {
		return
	}
	v.g.remove(v)
}
