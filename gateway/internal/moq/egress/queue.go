package egress

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// QueueSize bounds the objects a viewer may fall behind by: a held group
// fits whole, and past it the viewer drops the rest of the group.
const QueueSize = MaxHeldObjects + 64

// Queue is one viewer's objects on their way to its session: the sink offers
// them without blocking, and Write sends them.
type Queue struct {
	q       chan Object
	streams atomic.Uint64
}

// NewQueue makes a queue of n objects.
func NewQueue(n int) *Queue { return &Queue{q: make(chan Object, n)} }

// Offer queues o if there is room.
func (q *Queue) Offer(o Object) bool {
	select {
	case q.q <- o:
		return true
	default:
		return false
	}
}

// Streams is how many data streams Write has opened (PUBLISH_DONE's count).
func (q *Queue) Streams() uint64 { return q.streams.Load() }

// Stream says how Write sends a track's objects.
type Stream struct {
	V        moqt.Version
	Alias    uint64
	Priority uint8
	// Open opens a unidirectional stream of the session.
	Open func(ctx context.Context) (transport.SendStream, error)
	// Timeout bounds one object's write; a stream that cannot take it is
	// reset and the rest of its group dropped.
	Timeout time.Duration
	Dropped func()
}

// Write sends queued objects until ctx ends or the session's streams cannot
// be opened: a subgroup stream per group (subgroup 0, FIN when the next group
// starts), beginning only at a group's first object.
func (q *Queue) Write(ctx context.Context, s Stream) {
	var (
		st   transport.SendStream
		w    moqt.SubgroupWriter
		cur  uint64
		skip bool // the current group's stream failed
	)
	defer func() {
		if st != nil {
			_ = st.Close()
		}
	}()
	for {
		var o Object
		select {
		case <-ctx.Done():
			return
		case o = <-q.q:
		}
		if st == nil && skip && o.Group == cur {
			continue
		}
		var buf []byte
		if st == nil || o.Group != cur {
			if st != nil {
				_ = st.Close()
				st = nil
			}
			if o.ID != 0 {
				continue // a group whose start was dropped
			}
			ns, err := s.Open(ctx)
			if err != nil {
				return
			}
			q.streams.Add(1)
			st, cur, skip = ns, o.Group, false
			w = moqt.SubgroupWriter{V: s.V, Header: moqt.SubgroupHeader{TrackAlias: s.Alias, GroupID: o.Group,
				IDMode: moqt.SubgroupZero, HasPriority: true, Priority: s.Priority}}
			buf = w.AppendHeader(nil)
		}
		buf, err := w.AppendObject(buf, moqt.Object{ID: o.ID, Payload: o.Payload})
		if err != nil {
			continue
		}
		_ = st.SetWriteDeadline(time.Now().Add(s.Timeout))
		if _, err := st.Write(buf); err != nil {
			if ctx.Err() != nil {
				return
			}
			st.CancelWrite(uint64(moqt.ResetCancelled))
			st, skip = nil, true
			if s.Dropped != nil {
				s.Dropped()
			}
		}
	}
}
