package mediaload

import (
	"encoding/binary"
	"testing"

	"github.com/pion/rtp/codecs"
)

// The push bench reads a frame's send time back from the packet the gateway's
// VP8 payloader makes of the frame's start, and from an Opus packet; the other
// packets of a frame carry none.
func TestThePushBenchReadsTheSendTimeFromTheFirstPacketOfAFrame(t *testing.T) {
	f := make([]byte, 3000)
	binary.BigEndian.PutUint64(f[3:], 1234567890123)
	pkts := (&codecs.VP8Payloader{EnablePictureID: true}).Payload(1200, f)
	if len(pkts) != 3 {
		t.Fatalf("%d packets", len(pkts))
	}
	if ts, ok := stampOf(0, pkts[0]); !ok || ts != 1234567890123 {
		t.Fatalf("first packet: %d %v", ts, ok)
	}
	for _, p := range pkts[1:] {
		if _, ok := stampOf(0, p); ok {
			t.Fatal("a continuation packet was read as a frame start")
		}
	}
	if ts, ok := stampOf(1, f[:120]); !ok || ts != 1234567890123 {
		t.Fatalf("audio: %d %v", ts, ok)
	}
}
