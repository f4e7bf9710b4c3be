package medialink

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// nothingArrives fails the test if got receives a packet within a short while.
func nothingArrives(t *testing.T, got chan []byte, what string) {
	t.Helper()
	select {
	case p := <-got:
		t.Fatalf("%s: a packet of %d bytes arrived", what, len(p))
	case <-time.After(200 * time.Millisecond):
	}
}

// TestTwoPathsOnOneConnectionShareNoKey connects two pairs of paths on one QUIC
// connection — which the gateway and node never do, but nothing in the TLS
// exporter alone would prevent — and shows that their keys are apart: the first
// packet of each (both sequence number 1) has a different ciphertext for the same
// RTP packet, and a packet sealed with one path's key and addressed to the other
// path is refused there.
func TestTwoPathsOnOneConnectionShareNoKey(t *testing.T) {
	l := openLink(t)
	c1, _, got1 := l.paths(t)
	c2, s2, got2 := l.paths(t)
	p := append(rtpLike(200), "same RTP packet"...)

	a, err := c1.st.Load().seal(nil, new([12]byte), p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c2.st.Load().seal(nil, new([12]byte), p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a[5:13], b[5:13]) {
		t.Fatalf("the two first packets have sequence numbers %x and %x, want both 1", a[5:13], b[5:13])
	}
	body := func(b []byte) []byte { return b[mediaPrefix : len(b)-16] } // without the tag, which covers the ids
	if bytes.Equal(body(a), body(b)) {
		t.Fatal("two paths sealed the same packet at the same sequence number to the same ciphertext: they share a key and nonce")
	}

	// c1's key, s2's address: s2's keys are bound to c2's and s2's ids.
	cross := c1.st.Load().sendKey.Load().seal(nil, new([12]byte), s2.ID(), 2, p)
	if err := l.cli.media.Send(cross, &c2.st.Load().to); err != nil {
		t.Fatal(err)
	}
	nothingArrives(t, got2, "a packet sealed with another path's key on the same connection")

	// The original still arrives — so the refusal above was the key's.
	if err := l.cli.media.Send(a, &c1.st.Load().to); err != nil {
		t.Fatal(err)
	}
	if q := receive(t, got1); !bytes.Equal(q, p) {
		t.Fatalf("received %d bytes, not the %d sent", len(q), len(p))
	}
}

// TestAPacketReflectedToItsSenderIsRefused gives both ends of a path the same
// id, so only the direction in the key tells the two directions apart, and plays
// a packet the server sealed back to the server.
func TestAPacketReflectedToItsSenderIsRefused(t *testing.T) {
	l := openLink(t)
	l.cli.mu.Lock()
	l.srv.mu.Lock()
	l.cli.lastID = l.srv.lastID
	l.srv.mu.Unlock()
	l.cli.mu.Unlock()
	client, server, got := l.paths(t)
	if client.ID() != server.ID() {
		t.Fatalf("ids %d and %d, want the same", client.ID(), server.ID())
	}
	p := rtpLike(200)
	back, err := server.st.Load().seal(nil, new([12]byte), p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cli.media.Send(back, &client.st.Load().to); err != nil {
		t.Fatal(err)
	}
	nothingArrives(t, got, "a packet reflected back to the path that sealed it")
	if err := client.Send(p); err != nil {
		t.Fatal(err)
	}
	receive(t, got)
}

func TestAPathConnectsOnceSoItsSequenceNumbersNeverStartAgain(t *testing.T) {
	l := openLink(t)
	client, server, _ := l.paths(t)
	if err := client.Connect(l.cc, server.ID(), l.srv.MediaPort(), true); !errors.Is(err, errConnected) {
		t.Fatalf("second Connect: err = %v, want errConnected", err)
	}
	server.Close()
	if err := server.Connect(l.sc, client.ID(), l.cli.MediaPort(), false); !errors.Is(err, errConnected) {
		t.Fatalf("Connect after Close: err = %v, want errConnected", err)
	}
}

// statePair is the two directions of a path with fixed secrets and no sockets:
// out seals what in opens.
func statePair(t testing.TB) (out, in *pathState) {
	t.Helper()
	a := sha256.Sum256([]byte("client to server"))
	b := sha256.Sum256([]byte("server to client"))
	out, err := newPathState(mediaPeer{}, 7, a[:], b[:])
	if err != nil {
		t.Fatal(err)
	}
	in, err = newPathState(mediaPeer{}, 9, b[:], a[:])
	if err != nil {
		t.Fatal(err)
	}
	return out, in
}

// sealAt seals pkt as packet number seq of st.
func sealAt(t testing.TB, st *pathState, seq uint64, pkt []byte) []byte {
	t.Helper()
	st.next.Store(seq - 1)
	b, err := st.seal(nil, new([12]byte), pkt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTheReplayWindowTakesLatePacketsOnceAndRefusesOlderOnes(t *testing.T) {
	out, in := statePair(t)
	p := rtpLike(100)
	packets := map[uint64][]byte{}
	for _, seq := range []uint64{1, 2, 3, 100, 101, 200} {
		packets[seq] = sealAt(t, out, seq, p)
	}
	for i, c := range []struct {
		seq  uint64
		want bool
	}{
		{2, true},    // first seen
		{1, true},    // late, within the window
		{2, false},   // replay
		{101, true},  // a jump ahead
		{100, true},  // late by one
		{3, false},   // 98 behind the newest: older than the window, though never seen
		{101, false}, // replay
		{200, true},
		{200, false},
	} {
		b := append([]byte(nil), packets[c.seq]...)
		if _, ok := in.open(b); ok != c.want {
			t.Errorf("step %d: packet %d accepted = %v, want %v", i, c.seq, ok, c.want)
		}
	}
}

func TestKeysChangeEveryEpochAndLatePacketsOfTheLastEpochStillOpen(t *testing.T) {
	out, in := statePair(t)
	p := rtpLike(100)
	edge := uint64(1) << epochBits // the first packet of epoch 1
	last0 := sealAt(t, out, edge-1, p)
	first1 := sealAt(t, out, edge, p)
	if k := out.sendKey.Load(); k.epoch != 1 {
		t.Fatalf("the sender's key is of epoch %d after packet %d, want 1", k.epoch, edge)
	}
	// The same nonce input one epoch apart must not be the same key and nonce.
	if bytes.Equal(sealAt(t, out, 5, p)[mediaPrefix:], sealAt(t, out, edge+5, p)[mediaPrefix:]) {
		t.Fatal("packets 5 and 2^24+5 have the same ciphertext")
	}
	_, in = statePair(t) // a receiver that has seen nothing
	if _, ok := in.open(bytes.Clone(first1)); !ok {
		t.Fatal("the first packet of epoch 1 did not open")
	}
	if _, ok := in.open(bytes.Clone(last0)); !ok {
		t.Fatal("the last packet of epoch 0, one behind, did not open")
	}
	if in.recv.cur.epoch != 1 {
		t.Fatalf("the receiver's current epoch is %d, want 1", in.recv.cur.epoch)
	}
	// Two epochs on, epoch 0 is far older than the window: refused unopened.
	two := sealAt(t, out, 2*edge, p)
	if _, ok := in.open(bytes.Clone(two)); !ok {
		t.Fatal("the first packet of epoch 2 did not open")
	}
	if k := in.recv.key(0); k != nil {
		t.Fatal("the receiver still offers a key for epoch 0 two epochs on")
	}
}

func TestAForgedPacketClaimingAFutureEpochMovesNothing(t *testing.T) {
	out, in := statePair(t)
	p := rtpLike(100)
	future := sealAt(t, out, 5<<epochBits, p)
	future[len(future)-1] ^= 1
	if _, ok := in.open(future); ok {
		t.Fatal("a forged packet opened")
	}
	if in.recv.cur.epoch != 0 || in.recv.top != 0 {
		t.Fatalf("a forged packet moved the receiver to epoch %d, top %d", in.recv.cur.epoch, in.recv.top)
	}
	if _, ok := in.open(sealAt(t, out, 1, p)); !ok {
		t.Fatal("an authentic packet of epoch 0 did not open after the forgery")
	}
}

// FuzzPathReceive feeds arbitrary media packets to a connected path. Seeds are
// real packets sealed for it (fixed secrets, so they stay valid). Whatever the
// input, receive must not panic; anything it passes on must be exactly what the
// peer sealed (sealing the delivered packet again at its sequence number gives
// the input back) and be RTP; and the same input a second time is a replay.
func FuzzPathReceive(f *testing.F) {
	out, _ := statePair(f)
	rtp := append(rtpLike(12), "payload"...)
	for _, s := range []struct {
		seq uint64
		pkt []byte
	}{
		{1, rtp},
		{2, rtpLike(13)},
		{3, rtpLike(MaxMediaPacket - mediaOverhead + 1)},
		{4, []byte{Header(TypePLI, 0)}},          // authentic, not RTP
		{5, []byte{Header(TypeRTP, 0), 0x80, 0}}, // authentic, too short for RTP
		{1 << epochBits, rtp},
	} {
		f.Add(sealAt(f, out, s.seq, s.pkt))
	}
	zero := sealAt(f, out, 1, rtp)
	clear(zero[5:13]) // sequence number 0, never sent
	f.Add(zero)
	f.Add([]byte{})
	f.Add(make([]byte, mediaOverhead))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, in := statePair(t)
		var delivered [][]byte
		p := &Path{fn: func(b []byte) { delivered = append(delivered, bytes.Clone(b)) }}
		p.st.Store(in)
		p.receive(bytes.Clone(data))
		if len(delivered) == 0 {
			return
		}
		frame := delivered[0]
		if typ, _, _, err := ParsePacket(frame); err != nil || typ != TypeRTP {
			t.Fatalf("passed on a packet that is not RTP: %x (%v)", frame, err)
		}
		seq := binary.BigEndian.Uint64(data[5:13])
		if again := sealAt(t, out, seq, frame); !bytes.Equal(again, data) {
			t.Fatalf("passed on a packet the peer did not seal:\n in  %x\n out %x", data, again)
		}
		p.receive(bytes.Clone(data))
		if len(delivered) != 1 {
			t.Fatal("the same packet was passed on twice")
		}
	})
}

// BenchmarkPathSealReceive is the cryptographic work of the media path without
// the sockets: seal a 1200-byte RTP packet on one end and receive it on the other.
func BenchmarkPathSealReceive(b *testing.B) {
	l := openLink(b)
	n := 0
	client := l.cli.NewPath(nil)
	server := l.srv.NewPath(func([]byte) { n++ })
	if err := client.Connect(l.cc, server.ID(), l.srv.MediaPort(), true); err != nil {
		b.Fatal(err)
	}
	if err := server.Connect(l.sc, client.ID(), l.cli.MediaPort(), false); err != nil {
		b.Fatal(err)
	}
	st := client.st.Load()
	p := rtpLike(1200)
	buf := make([]byte, 0, MaxMediaPacket)
	nonce := new([12]byte)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		sealed, err := st.seal(buf, nonce, p)
		if err != nil {
			b.Fatal(err)
		}
		server.receive(sealed)
	}
	if n != b.N {
		b.Fatalf("%d of %d packets received", n, b.N)
	}
}
