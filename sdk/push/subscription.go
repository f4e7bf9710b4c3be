package push

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// track is one track of a broadcast: its current group (kept so that a
// subscriber joining mid-group starts at the keyframe) and its subscriptions.
type track struct {
	name     string
	priority uint8
	limit    int
	// span is how long a group lasts when every frame may start one (Opus);
	// 0 for video, whose keyframes each start one.
	span time.Duration

	mu      sync.Mutex
	started bool          // a keyframe has been written
	group   uint64        // the current group's id
	groupTS time.Duration // the current group's first timestamp
	cur     [][]byte      // the current group's objects, while retained
	curSize int
	retain  bool // cur holds the whole current group
	fixed   bool // the catalog: one group, complete
	closed  bool
	subs    map[*subscription]struct{}
}

func newTrack(name string, priority uint8, limit int) *track {
	return &track{name: name, priority: priority, limit: limit, subs: map[*subscription]struct{}{}}
}

// static makes t a track of one complete group holding obj (the catalog).
func (t *track) static(obj []byte) {
	t.started, t.retain, t.fixed = true, true, true
	t.cur, t.curSize = [][]byte{obj}, len(obj)
}

// write adds one object at timestamp ts: a keyframe opens the next group,
// unless the track's groups span a time (Opus) and the current one has not
// spanned it yet.
func (t *track) write(obj []byte, ts time.Duration, keyframe bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if keyframe && t.started && t.span > 0 && ts-t.groupTS < t.span && ts >= t.groupTS {
		keyframe = false // joins the current group
	}
	switch {
	case keyframe:
		if t.started {
			t.group++
		}
		t.groupTS = ts
		t.started, t.retain = true, true
		t.cur, t.curSize = append(t.cur[:0:0], obj), len(obj)
	case !t.started:
		return ErrNoKeyframe
	case t.retain:
		t.cur, t.curSize = append(t.cur, obj), t.curSize+len(obj)
		if t.curSize > t.limit {
			t.cur, t.curSize, t.retain = nil, 0, false
		}
	}
	for sub := range t.subs {
		sub.push(obj, keyframe, t.group)
	}
	return nil
}

// add starts sub on t, at the current group when atGroup and it is retained,
// else at the next keyframe. It is false once t is closed.
func (t *track) add(sub *subscription, atGroup bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.subs[sub] = struct{}{}
	if atGroup && t.started && t.retain {
		sub.seed(t.group, slices.Clone(t.cur), t.curSize, t.fixed)
	}
	return true
}

func (t *track) remove(sub *subscription) {
	t.mu.Lock()
	delete(t.subs, sub)
	t.mu.Unlock()
}

// close stops t taking frames and returns the subscriptions still on it.
func (t *track) close() []*subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	subs := make([]*subscription, 0, len(t.subs))
	for sub := range t.subs {
		subs = append(subs, sub)
	}
	return subs
}

// group is one group queued for one subscriber: its objects, how many are
// written, and its data stream once opened.
type group struct {
	id      uint64
	objs    [][]byte
	next    int
	closed  bool // no more objects will join
	dropped bool
	str     *quic.SendStream
	w       moqt.SubgroupWriter
}

// subscription serves one SUBSCRIBE: a queue of groups bounded by bytes and
// the goroutine (run) that writes them, one unidirectional stream per group.
type subscription struct {
	s     *Session
	t     *track
	id    uint64       // the SUBSCRIBE's request id, also its track alias
	req   *quic.Stream // draft 17+: the request stream
	limit int

	ctx    context.Context // ends with an abort, unblocking OpenUniStreamSync
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned

	mu       sync.Mutex
	wake     sync.Cond
	queue    []*group
	queued   int  // bytes of objects not yet written
	skipping bool // the current group was dropped: wait for a keyframe
	ending   bool
	aborted  bool
	status   moqt.ErrorCode
	reason   string
	streams  uint64 // data streams opened, for PUBLISH_DONE
	drops    uint64
}

func newSubscription(s *Session, t *track, id uint64, req *quic.Stream) *subscription {
	ctx, cancel := context.WithCancel(s.conn.Context())
	sub := &subscription{s: s, t: t, id: id, req: req, limit: t.limit, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), skipping: true}
	sub.wake.L = &sub.mu
	return sub
}

// seed queues the track's current group for a subscriber that just joined.
func (sub *subscription) seed(id uint64, objs [][]byte, size int, complete bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.queue = append(sub.queue, &group{id: id, objs: objs, closed: complete})
	sub.queued += size
	sub.skipping = false
	sub.wake.Signal()
}

// push queues one object and, if the queue is over its limit, drops the
// oldest groups whole until it fits. It never blocks on the network.
func (sub *subscription) push(obj []byte, keyframe bool, gid uint64) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ending {
		return
	}
	if keyframe {
		if n := len(sub.queue); n > 0 {
			sub.queue[n-1].closed = true
		}
		sub.queue = append(sub.queue, &group{id: gid, objs: [][]byte{obj}})
		sub.skipping = false
	} else {
		n := len(sub.queue)
		if sub.skipping || n == 0 || sub.queue[n-1].closed {
			return
		}
		g := sub.queue[n-1]
		g.objs = append(g.objs, obj)
	}
	sub.queued += len(obj)
	for sub.queued > sub.limit && len(sub.queue) > 0 {
		sub.dropLocked(0)
	}
	sub.wake.Signal()
}

// dropLocked removes queue[i], resetting its stream if it was started.
func (sub *subscription) dropLocked(i int) {
	g := sub.queue[i]
	for _, o := range g.objs[g.next:] {
		sub.queued -= len(o)
	}
	g.dropped = true
	if g.str != nil {
		g.str.CancelWrite(sub.resetCode())
	}
	sub.queue = slices.Delete(sub.queue, i, i+1)
	if !g.closed {
		sub.skipping = true
	}
	sub.drops++
	sub.s.log.Debug("dropped a group for a slow subscriber", "track", sub.t.name, "group", g.id, "drops", sub.drops)
}

// dropGroupLocked drops g if it is still queued.
func (sub *subscription) dropGroupLocked(g *group) {
	if i := slices.Index(sub.queue, g); i >= 0 {
		sub.dropLocked(i)
	}
}

func (sub *subscription) resetCode() quic.StreamErrorCode {
	if sub.s.v == moqt.Draft16 {
		return quic.StreamErrorCode(moqt.ResetCancelled)
	}
	return quic.StreamErrorCode(moqt.ResetTooFarBehind)
}

// end stops the subscription with a PUBLISH_DONE status: after what is
// queued has been written, or at once (dropping it) when abort.
func (sub *subscription) end(status moqt.ErrorCode, reason string, abort bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ending && (sub.aborted || !abort) {
		return
	}
	if !sub.ending {
		sub.status, sub.reason = status, reason
	}
	sub.ending = true
	if n := len(sub.queue); n > 0 {
		sub.queue[n-1].closed = true
	}
	if abort {
		sub.aborted = true
		for len(sub.queue) > 0 {
			sub.dropLocked(0)
		}
		sub.cancel()
	}
	sub.wake.Broadcast()
}

// next waits for work: an object to write (obj != nil) or a group whose
// objects are all written (obj == nil). It is false when the subscription is over.
func (sub *subscription) next() (g *group, idx int, obj []byte, ok bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for {
		if sub.aborted || (sub.ending && len(sub.queue) == 0) {
			return nil, 0, nil, false
		}
		if len(sub.queue) > 0 {
			g := sub.queue[0]
			if g.next < len(g.objs) {
				return g, g.next, g.objs[g.next], true
			}
			if g.closed {
				sub.queue = sub.queue[1:]
				return g, 0, nil, true
			}
		}
		sub.wake.Wait()
	}
}

// run writes the queue until the subscription ends, then sends PUBLISH_DONE.
func (sub *subscription) run() {
	defer sub.s.wg.Done()
	defer close(sub.done)
	defer sub.cancel()
	var buf []byte
	for {
		g, idx, obj, ok := sub.next()
		if !ok {
			break
		}
		if obj == nil {
			if g.str != nil {
				_ = g.str.Close()
			}
			continue
		}
		if g.str == nil && !sub.open(g) {
			continue
		}
		var err error
		buf, err = g.w.AppendObject(buf[:0], moqt.Object{ID: uint64(idx), Payload: obj})
		if err == nil {
			_, err = g.str.Write(buf)
		}
		sub.mu.Lock()
		if !g.dropped {
			g.next++
			sub.queued -= len(obj)
			if err != nil {
				// The server stopped this group's stream (or the session
				// is ending): skip the rest of the group.
				sub.dropGroupLocked(g)
			}
		}
		sub.mu.Unlock()
	}
	sub.finish()
}

// open starts g's data stream; false when g was dropped meanwhile or the
// stream could not be opened.
func (sub *subscription) open(g *group) bool {
	str, err := sub.s.conn.OpenUniStreamSync(sub.ctx)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if err != nil {
		sub.dropGroupLocked(g)
		return false
	}
	sub.streams++
	if g.dropped {
		str.CancelWrite(sub.resetCode())
		return false
	}
	g.str = str
	g.w = moqt.SubgroupWriter{V: sub.s.v, Header: moqt.SubgroupHeader{
		TrackAlias: sub.id, GroupID: g.id, HasPriority: true, Priority: sub.t.priority,
		EndOfGroup: true, FirstObject: true,
	}}
	if _, err := str.Write(g.w.AppendHeader(nil)); err != nil {
		sub.dropGroupLocked(g)
		return false
	}
	return true
}

// finish sends PUBLISH_DONE (unless the subscriber left or the session is
// gone) and takes the subscription off its track.
func (sub *subscription) finish() {
	sub.t.remove(sub)
	s := sub.s
	sub.mu.Lock()
	status, reason, streams := sub.status, sub.reason, sub.streams
	sub.mu.Unlock()
	if s.v == moqt.Draft16 {
		s.mu.Lock()
		delete(s.subs, sub.id)
		s.mu.Unlock()
	}
	if s.gone() != nil {
		return
	}
	done := &moqt.PublishDone{RequestID: sub.id, Status: status, StreamCount: streams, Reason: reason}
	if sub.req == nil {
		_ = s.writeCtrl(done)
		return
	}
	if status != moqt.DoneSubscriptionEnded {
		_, _ = sub.req.Write(done.Append(nil, s.v))
	}
	_ = sub.req.Close()
	sub.req.CancelRead(0)
}
