package medialink

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
)

// The key schedule of a media path (RATIONALE.md, "Keys and nonces"):
//
//	secret(dir)    = TLS-Exporter(exporterLabel, role of the sender ‖ sender's path id ‖ receiver's path id, 32)
//	key, iv(epoch) = HKDF-Expand(SHA-256, secret(dir), keyInfo ‖ epoch, 16 + 12)
//	epoch          = sequence number >> epochBits
//	nonce          = iv XOR (0⁴ ‖ sequence number)
const (
	exporterLabel = "EXPORTER-sluice-media-path"
	keyInfo       = "sluice media path key"
	// epochBits sets how many packets one key seals: 2^24 (16.7 million), well
	// inside AES-GCM's usage limit for packets of this size.
	epochBits = 24
	// replayWindow is how far behind the newest sequence number a packet may arrive.
	replayWindow = 64
)

// Roles of the sender in the exporter context: the direction of the keys.
const (
	roleClient byte = 'c'
	roleServer byte = 's'
)

// exportSecret exports the secret of one direction of a path from the link's TLS
// handshake: the direction in which the end that dialled (client) or was dialled
// sends, from path id from to path id to.
func exportSecret(cs *tls.ConnectionState, client bool, from, to uint32) ([]byte, error) {
	ctx := [9]byte{roleServer}
	if client {
		ctx[0] = roleClient
	}
	binary.BigEndian.PutUint32(ctx[1:5], from)
	binary.BigEndian.PutUint32(ctx[5:9], to)
	s, err := cs.ExportKeyingMaterial(exporterLabel, ctx[:], 32)
	if err != nil {
		return nil, fmt.Errorf("medialink: media keys: %w", err)
	}
	return s, nil
}

// epochKey is the AEAD and nonce base of one direction for one key epoch.
type epochKey struct {
	epoch uint64
	aead  cipher.AEAD
	iv    [12]byte
}

func deriveKey(secret []byte, epoch uint64) (*epochKey, error) {
	info := binary.BigEndian.AppendUint64([]byte(keyInfo), epoch)
	km, err := hkdf.Expand(sha256.New, secret, string(info), 16+12)
	if err != nil {
		return nil, fmt.Errorf("medialink: media key of epoch %d: %w", epoch, err)
	}
	b, err := aes.NewCipher(km[:16])
	if err != nil {
		return nil, fmt.Errorf("medialink: media key of epoch %d: %w", epoch, err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("medialink: media key of epoch %d: %w", epoch, err)
	}
	k := &epochKey{epoch: epoch, aead: aead}
	copy(k.iv[:], km[16:])
	return k, nil
}

// nonce writes the nonce of packet seq to n. n is the caller's scratch space,
// not a local array: passed to the AEAD's interface method, a local one would be
// moved to the heap, an allocation per packet.
func (k *epochKey) nonce(n *[12]byte, seq uint64) {
	*n = k.iv
	binary.BigEndian.PutUint64(n[4:], binary.BigEndian.Uint64(n[4:])^seq)
}

// pathState is a connected path: where it sends, and the keys of both
// directions. Its send side may be used by several goroutines at once; its
// receive side (recv) only by the endpoint's Serve goroutine.
type pathState struct {
	to     mediaPeer // the peer's media socket
	peer   uint32
	closed bool

	out     []byte                   // the secret of the direction this end sends in
	sendKey atomic.Pointer[epochKey] // the key of the newest epoch sent in
	next    atomic.Uint64            // the last sequence number sent

	recv *opener
}

func newPathState(to mediaPeer, peer uint32, out, in []byte) (*pathState, error) {
	sk, err := deriveKey(out, 0)
	if err != nil {
		return nil, err
	}
	rk, err := deriveKey(in, 0)
	if err != nil {
		return nil, err
	}
	st := &pathState{to: to, peer: peer, out: out, recv: &opener{secret: in, cur: rk}}
	st.sendKey.Store(sk)
	return st, nil
}

// seal appends the media packet of pkt (header byte and payload) to dst; nonce
// is scratch space.
func (st *pathState) seal(dst []byte, nonce *[12]byte, pkt []byte) ([]byte, error) {
	seq := st.next.Add(1)
	k := st.sendKey.Load()
	if k.epoch != seq>>epochBits {
		var err error
		if k, err = st.keyFor(seq >> epochBits); err != nil {
			return nil, err
		}
	}
	return k.seal(dst, nonce, st.peer, seq, pkt), nil
}

// seal appends the media packet of pkt addressed to path id to and numbered
// seq, sealed under k, to dst; nonce is scratch space.
func (k *epochKey) seal(dst []byte, nonce *[12]byte, to uint32, seq uint64, pkt []byte) []byte {
	b := slices.Grow(dst, mediaPrefix+len(pkt)-1+16)[:len(dst)+mediaPrefix]
	prefix := b[len(dst):]
	prefix[0] = pkt[0]
	binary.BigEndian.PutUint32(prefix[1:5], to)
	binary.BigEndian.PutUint64(prefix[5:13], seq)
	k.nonce(nonce, seq)
	return k.aead.Seal(b, nonce[:], pkt[1:], prefix)
}

// keyFor is the send key of an epoch other than the newest one's. Senders that
// cross into a new epoch at once may each derive its key; the newest is kept.
func (st *pathState) keyFor(epoch uint64) (*epochKey, error) {
	k := st.sendKey.Load()
	nk, err := deriveKey(st.out, epoch)
	if err != nil {
		return nil, err
	}
	if nk.epoch > k.epoch {
		st.sendKey.CompareAndSwap(k, nk)
	}
	return nk, nil
}

// open authenticates and opens a media packet in place and returns it framed as
// a datagram (header byte and payload), or false if it is not authentic, is a
// replay, or is too old for the replay window.
func (st *pathState) open(b []byte) ([]byte, bool) {
	if len(b) < mediaOverhead {
		return nil, false
	}
	r := st.recv
	seq := binary.BigEndian.Uint64(b[5:13])
	k := r.cur
	if k.epoch != seq>>epochBits {
		if k = r.key(seq >> epochBits); k == nil {
			return nil, false
		}
	}
	k.nonce(&r.nonce, seq)
	plain, err := k.aead.Open(b[mediaPrefix:mediaPrefix], r.nonce[:], b[mediaPrefix:], b[:mediaPrefix])
	if err != nil {
		return nil, false
	}
	// Authentic from here on: the peer sealed it for this path and direction.
	if !r.fresh(seq) {
		return nil, false
	}
	r.advance(k)
	b[mediaPrefix-1] = b[0]
	return b[mediaPrefix-1 : mediaPrefix+len(plain)], true
}

// opener is the receive side of a path: the keys of the current epoch and of one
// other (the one before, or one a packet claimed), and the replay window.
type opener struct {
	secret     []byte
	cur, other *epochKey
	top        uint64 // the newest sequence number received
	seen       uint64 // bit i: top-i was received
	nonce      [12]byte
}

// key is the key to try on a packet of an epoch, or nil when every packet of
// that epoch is older than the replay window. A key is derived for an epoch the
// path has not used yet, but becomes current only once a packet authenticates
// under it (advance).
func (r *opener) key(epoch uint64) *epochKey {
	switch {
	case epoch == r.cur.epoch:
		return r.cur
	case r.other != nil && r.other.epoch == epoch:
		return r.other
	case epoch+1 < r.cur.epoch:
		return nil
	}
	k, err := deriveKey(r.secret, epoch)
	if err != nil {
		return nil
	}
	r.other = k
	return k
}

// advance makes k current if an authentic packet has just shown its epoch to be
// newer.
func (r *opener) advance(k *epochKey) {
	if k.epoch > r.cur.epoch {
		r.cur, r.other = k, r.cur
	}
}

// fresh records an authentic sequence number and says whether it is new: not
// seen before and not older than the replay window.
func (r *opener) fresh(seq uint64) bool {
	switch {
	case seq == 0: // never sent: the first sequence number is 1
		return false
	case seq > r.top:
		if d := seq - r.top; d < replayWindow {
			r.seen = r.seen<<d | 1
		} else {
			r.seen = 1
		}
		r.top = seq
		return true
	case r.top-seq >= replayWindow, r.seen&(1<<(r.top-seq)) != 0:
		return false
	default:
		r.seen |= 1 << (r.top - seq)
		return true
	}
}
