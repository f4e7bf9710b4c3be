package moq

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// readMessage reads what sdk/moqt decodes through it, and SUBSCRIBE_NAMESPACE,
// FETCH and TRACK_STATUS as requests to answer without decoding; whatever the
// bytes, it returns a message or an error, never more than the input.
func FuzzReadMessage(f *testing.F) {
	for _, v := range []moqt.Version{moqt.Draft16, moqt.Draft17, moqt.Draft19} {
		f.Add(uint32(v), (&moqt.PublishNamespace{RequestID: 2, Namespace: moqt.Namespace{"cam1"}}).Append(nil, v))
		f.Add(uint32(v), (&moqt.SubscribeOK{RequestID: 1, TrackAlias: 1}).Append(nil, v))
	}
	f.Add(uint32(moqt.Draft19), []byte{0x50, 0x00, 0x03, 0x00, 0x00, 0x00}) // @moq/net SUBSCRIBE_NAMESPACE, draft 19
	f.Add(uint32(moqt.Draft16), []byte{0x11, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00})
	f.Add(uint32(moqt.Draft17), []byte{0x16, 0x00, 0x00})
	f.Add(uint32(moqt.Draft16), []byte{0x3f, 0x00, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, ver uint32, b []byte) {
		v := moqt.Version(ver)
		if !v.Valid() {
			return
		}
		r := bytes.NewReader(b)
		m, err := readMessage(r, v)
		if err != nil {
			return
		}
		if u, ok := m.(*unhandled); ok && !rawType(u.typ, v) {
			t.Fatalf("type 0x%x read as unhandled", u.typ)
		}
		if r.Len() > len(b) {
			t.Fatal("read past the input")
		}
	})
}

func TestSubscribeNamespaceIsReadWithItsRequestIDInEachDraft(t *testing.T) {
	for _, c := range []struct {
		v moqt.Version
		b []byte
	}{
		{moqt.Draft19, []byte{0x50, 0x00, 0x03, 0x04, 0x00, 0x00}},
		{moqt.Draft17, []byte{0x11, 0x00, 0x05, 0x04, 0x00, 0x00, 0x01, 0x00}},
		{moqt.Draft16, []byte{0x11, 0x00, 0x04, 0x04, 0x00, 0x01, 0x00}},
	} {
		m, err := readMessage(bytes.NewReader(c.b), c.v)
		u, ok := m.(*unhandled)
		if err != nil || !ok || !u.subscribeNamespace(c.v) || u.id != 4 {
			t.Errorf("%s: %#v, %v; want SUBSCRIBE_NAMESPACE request 4", c.v, m, err)
		}
	}
	if _, err := readMessage(bytes.NewReader([]byte{0x50, 0x00}), moqt.Draft19); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a cut message: %v, want unexpected EOF", err)
	}
}
