package fanout

import (
	"bytes"
	"net"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/sluicegw/sluice/internal/rawudp"
)

// testKeys are a key and salt of the profile's sizes.
func testKeys(tb testing.TB, profile srtp.ProtectionProfile) (key, salt []byte) {
	tb.Helper()
	kl, err1 := profile.KeyLen()
	sl, err2 := profile.SaltLen()
	if err1 != nil || err2 != nil {
		tb.Fatal(err1, err2)
	}
	return bytes.Repeat([]byte{7}, kl), bytes.Repeat([]byte{9}, sl)
}

func testViewer(tb testing.TB, profile srtp.ProtectionProfile) *Viewer {
	tb.Helper()
	key, salt := testKeys(tb, profile)
	c, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		tb.Fatal(err)
	}
	v := &Viewer{srtp: c}
	v.tracks[1] = viewerTrack{bound: true, ssrc: 0xCAFE, pt: 111, seqOff: 1000, tsOff: 5}
	return v
}

func testPacket(tb testing.TB, seq uint16, payload int) []byte {
	tb.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 96, SequenceNumber: seq, Timestamp: 90000, SSRC: 1},
		Payload: bytes.Repeat([]byte{0xAB}, payload)}
	b, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// profiles are the SRTP profiles pion negotiates, in its order of preference.
var profiles = []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes256Gcm, srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80}

// A viewer's copy is the source's packet under the viewer's SSRC, payload
// type and offsets, the marker kept, and opens with the viewer's keys to the
// source's payload.
func TestASealedCopyOpensWithTheViewersKeysAsTheRewrittenPacket(t *testing.T) {
	for _, profile := range profiles {
		v := testViewer(t, profile)
		key, salt := testKeys(t, profile)
		rx, err := srtp.CreateContext(key, salt, profile)
		if err != nil {
			t.Fatal(err)
		}
		plain := testPacket(t, 65000, 900)
		var out [maxPacket]byte
		n := v.seal(out[:], plain, 1, 1)
		if n == 0 {
			t.Fatal("nothing sealed")
		}
		if bytes.Contains(out[:n], bytes.Repeat([]byte{0xAB}, 16)) {
			t.Fatal("the payload went out in the clear")
		}
		opened, err := rx.DecryptRTP(nil, out[:n], nil)
		if err != nil {
			t.Fatalf("%v: %v", profile, err)
		}
		var got rtp.Packet
		if err := got.Unmarshal(opened); err != nil {
			t.Fatal(err)
		}
		if got.SSRC != 0xCAFE || got.PayloadType != 111 || !got.Marker || got.SequenceNumber != 464 || got.Timestamp != 90005 {
			t.Fatalf("%v: header %+v", profile, got.Header)
		}
		if !bytes.Equal(got.Payload, plain[12:]) {
			t.Fatalf("%v: payload changed", profile)
		}
		if v.seal(out[:], plain, 2, 1) != 0 {
			t.Fatal("sealed for a track the viewer does not carry")
		}
	}
}

// The history answers for the packets it still holds, and not for one a
// later packet has taken the slot of.
func TestTheHistoryHoldsTheLatestPacketsOfATrack(t *testing.T) {
	var h history
	for seq := uint16(65000); seq != 1000; seq++ {
		h.put(seq, testPacket(t, seq, 10))
	}
	var buf [maxPacket]byte
	if n := h.get(999, buf[:]); n == 0 || !bytes.Equal(buf[:n], testPacket(t, 999, 10)) {
		t.Fatal("the latest packet is not held")
	}
	if h.get(999-historySize, buf[:]) != 0 {
		t.Fatal("a packet older than the history was answered")
	}
	if h.get(1000, buf[:]) != 0 {
		t.Fatal("a packet never sent was answered")
	}
}

// BenchmarkSeal is the per-viewer step: the header rewritten and the packet
// sealed, for a 1,200-byte video packet.
func BenchmarkSeal(b *testing.B) {
	for _, profile := range profiles {
		b.Run(profile.String(), func(b *testing.B) {
			v := testViewer(b, profile)
			plain := testPacket(b, 1, 1188)
			var out [maxPacket]byte
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for i := 0; b.Loop(); i++ {
				plain[2], plain[3] = byte(i>>8), byte(i)
				if v.seal(out[:], plain, 1, 1) == 0 {
					b.Fatal("not sealed")
				}
			}
		})
	}
}

// BenchmarkBatchSend is one sendmmsg of 64 sealed-size datagrams over
// loopback; ns/op is per batch, so per datagram it is a 64th.
func BenchmarkBatchSend(b *testing.B) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	raw, err := rawudp.New(tx)
	if err != nil {
		b.Fatal(err)
	}
	bt := newBatch(NewSocket(raw))
	to, err := raw.Peer(rx.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for range batchSize - 1 {
			bt.add(1210, &to)
		}
		bt.add(1210, &to) // the 64th sends the batch
	}
}
