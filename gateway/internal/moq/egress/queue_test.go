package egress

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// memStream is a unidirectional stream held in memory.
type memStream struct {
	bytes.Buffer
	closed, reset bool
}

func (m *memStream) Close() error                     { m.closed = true; return nil }
func (m *memStream) CancelWrite(uint64)               { m.reset = true }
func (m *memStream) SetWriteDeadline(time.Time) error { return nil }

func TestAQueueWritesAStreamPerGroupFromItsFirstObject(t *testing.T) {
	q := NewQueue(16)
	for _, o := range []Object{{0, 3, []byte("late")}, {1, 0, []byte("a")}, {1, 1, []byte("b")}, {2, 0, []byte("c")}} {
		q.Offer(o)
	}
	var mu sync.Mutex
	var streams []*memStream
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Write(ctx, Stream{V: moqt.Draft19, Alias: 7, Priority: 1, Timeout: time.Second,
			Open: func(context.Context) (transport.SendStream, error) {
				mu.Lock()
				defer mu.Unlock()
				s := &memStream{}
				streams = append(streams, s)
				return s, nil
			}})
	}()
	for deadline := time.Now().Add(5 * time.Second); len(q.q) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	cancel()
	<-done
	if len(streams) != 2 || q.Streams() != 2 {
		t.Fatalf("%d streams (counted %d), want 2: group 0 began mid-group and is skipped", len(streams), q.Streams())
	}
	want := [][]string{{"a", "b"}, {"c"}}
	for i, st := range streams {
		if !st.closed {
			t.Errorf("stream %d not closed", i)
		}
		typ, err := moqt.ReadVarint(&st.Buffer, moqt.Draft19)
		if err != nil {
			t.Fatal(err)
		}
		r, err := moqt.NewSubgroupReader(&st.Buffer, moqt.Draft19, typ, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if r.Header.TrackAlias != 7 || r.Header.GroupID != uint64(i+1) || r.Header.Priority != 1 {
			t.Errorf("stream %d header %+v", i, r.Header)
		}
		for j, w := range want[i] {
			o, err := r.ReadObject()
			if err != nil || o.ID != uint64(j) || string(o.Payload) != w {
				t.Errorf("stream %d object %d: %+v %v, want id %d %q", i, j, o, err, j, w)
			}
		}
	}
}

func TestEndingTheStreamEndsEveryViewer(t *testing.T) {
	k := testSink()
	k.AddTrack(medialink.Track{Index: 0, Kind: "audio", MimeType: "audio/opus", ClockRate: 48000})
	a, c := newViewer(k, 4), newViewer(k, 4)
	k.Attach(a, "audio")
	k.Attach(c, "catalog.json")
	k.End("stream ended")
	if a.ended != "stream ended" || c.ended != "stream ended" {
		t.Errorf("viewers ended with %q and %q", a.ended, c.ended)
	}
	if k.Attach(newViewer(k, 4), "audio") {
		t.Error("a viewer attached to an ended stream")
	}
}
