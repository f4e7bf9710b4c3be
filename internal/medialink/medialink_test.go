package medialink

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestControlMessagesRoundTripAndBadOnesAreRefused(t *testing.T) {
	var buf bytes.Buffer
	in := &Msg{T: MsgTracks, Expect: 2, Tracks: []Track{{Index: 0, Kind: "video", MimeType: "video/VP8", ClockRate: 90000}, {Index: 1, Kind: "audio", MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}}
	if err := WriteMsg(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadMsg(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tracks) != 2 || out.Tracks[1].Channels != 2 || out.Expect != 2 {
		t.Fatalf("round trip changed the message: %+v", out)
	}
	for name, raw := range map[string]string{
		"unknown type":       `{"t":"launch"}`,
		"hello without role": `{"t":"hello","stream":"x"}`,
		"repeated index":     `{"t":"tracks","tracks":[{"index":1,"kind":"video"},{"index":1,"kind":"audio"}]}`,
		"index out of range": `{"t":"tracks","tracks":[{"index":16,"kind":"video"}]}`,
		"bad kind":           `{"t":"tracks","tracks":[{"index":0,"kind":"text"}]}`,
		"not JSON":           `{{`,
	} {
		var b bytes.Buffer
		b.Write([]byte{0, 0, 0, byte(len(raw))})
		b.WriteString(raw)
		if _, err := ReadMsg(&b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", name, err)
		}
	}
	huge := []byte{0, 2, 0, 0} // 128 KiB announced
	if _, err := ReadMsg(bytes.NewReader(huge)); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversized control message: err = %v", err)
	}
}

func TestParsePacketSplitsHeaderAndRefusesShortOrUnknownPackets(t *testing.T) {
	rtp := append([]byte{Header(TypeRTP, 3)}, make([]byte, 12)...)
	typ, track, payload, err := ParsePacket(rtp)
	if err != nil || typ != TypeRTP || track != 3 || len(payload) != 12 {
		t.Fatalf("ParsePacket(rtp) = %d %d %d %v", typ, track, len(payload), err)
	}
	for name, p := range map[string][]byte{
		"empty":        {},
		"short RTP":    {Header(TypeRTP, 0), 1, 2},
		"odd NACK":     {Header(TypeNACK, 0), 1, 2, 3},
		"empty NACK":   {Header(TypeNACK, 0)},
		"unknown type": {0x70},
	} {
		if _, _, _, err := ParsePacket(p); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", name, err)
		}
	}
}

func FuzzReadMsg(f *testing.F) {
	for _, s := range []string{`{"t":"hello","stream":"a","role":"publish"}`, `{"t":"tracks","expect":1,"tracks":[{"index":0,"kind":"video"}]}`, `{"t":"gone"}`, `[]`} {
		b := []byte{0, 0, 0, byte(len(s))}
		f.Add(append(b, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMsg(bytes.NewReader(data))
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ReadMsg returned a message that does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := WriteMsg(&buf, m); err != nil && !errors.Is(err, ErrProtocol) {
			// Re-encoding may grow past the size limit (JSON escapes), which
			// WriteMsg refuses as a protocol error; anything else is a bug.
			t.Fatalf("a valid message did not encode: %v", err)
		}
	})
}

func FuzzParsePacket(f *testing.F) {
	f.Add([]byte{0x03, 0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0x10})
	f.Add([]byte{0x20, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		typ, track, payload, err := ParsePacket(p)
		if err != nil {
			return
		}
		if track > 15 || typ > TypeNACK || len(payload) != len(p)-1 {
			t.Fatalf("ParsePacket(%x) = %d %d %d", p, typ, track, len(payload))
		}
	})
}
