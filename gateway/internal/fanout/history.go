package fanout

import "sync"

// historySize is how many of a track's latest packets are kept for
// retransmission: ~3.5 s of the bench's video, more than a NACK's round trip
// and the receiver's give-up time (pion and libwebrtc stop asking after ~1 s).
const historySize = 512

// maxPacket is the largest RTP packet kept or sent, with room for the SRTP
// tag (and an MKI).
const maxPacket = 1500

// history is one track's latest packets as they were before any viewer's
// rewrite, shared by every viewer of the track: a NACK from any of them is
// answered from it. It is written by the track's fan-out and read by the
// viewers' RTCP readers.
type history struct {
	mu    sync.RWMutex
	slots [historySize]struct {
		seq uint16
		n   int // 0: empty
		buf [maxPacket]byte
	}
}

// put keeps a copy of pkt, an RTP packet with sequence number seq.
func (h *history) put(seq uint16, pkt []byte) {
	if len(pkt) > maxPacket {
		return
	}
	h.mu.Lock()
	s := &h.slots[seq%historySize]
	s.seq, s.n = seq, copy(s.buf[:], pkt)
	h.mu.Unlock()
}

// get copies the packet with sequence number seq into dst and returns its
// length, or 0 if it is no longer (or never was) kept.
func (h *history) get(seq uint16, dst []byte) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := &h.slots[seq%historySize]
	if s.n == 0 || s.seq != seq {
		return 0
	}
	return copy(dst, s.buf[:s.n])
}
