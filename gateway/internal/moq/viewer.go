package moq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// doneTrackEnded is PUBLISH_DONE's TRACK_ENDED: the stream is over.
const doneTrackEnded = moqt.DoneTrackEnded

// viewerQueue bounds the objects a viewer may fall behind by: a held group
// fits whole, and past it the viewer drops the rest of the group.
const viewerQueue = maxHeldObjects + 64

// viewer is one client SUBSCRIBE to a track of a live stream: the objects
// its sink offers are queued (without blocking the sink) and written by its
// own goroutine, a subgroup stream per group, under the SUBSCRIBE's request
// id as track alias.
type viewer struct {
	s     *moqSession
	r     *request
	sink  *sink
	w     *watch
	track *outTrack // nil: the catalog; set by sink.attach under sink.mu
	alias uint64
	prio  uint8
	q     chan object

	dropping bool // under sink.mu: the rest of the current group is dropped

	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
	code    moqt.ErrorCode
	reason  string
	notify  bool // send PUBLISH_DONE (false: the client ended it, or the session ended)
	streams atomic.Uint64
}

// onSubscribe serves a viewer's SUBSCRIBE: admission (kind play, protocol
// moq), the stream's shared subscription, the moq sink on it, SUBSCRIBE_OK,
// then the track's objects from the current group on.
func (s *moqSession) onSubscribe(r *request, m *moqt.Subscribe) {
	stream, err := streamOf(m.Namespace)
	if err != nil {
		r.refuse(moqt.ReqDoesNotExist, err.Error())
		return
	}
	w, ref := s.watch(stream, m.Namespace)
	if ref != nil {
		r.refuse(ref.code, ref.reason)
		return
	}
	sub := w.sub
	k := sub.Sink("moq", func() session.Sink { return newSink(s.srv, stream, sub) }).(*sink)
	served, has, group, id := k.has(m.TrackName)
	if !served {
		s.unwatch(w)
		r.refuse(moqt.ReqDoesNotExist, fmt.Sprintf("stream %s has no track %q (its tracks are in %s)", stream, m.TrackName, hang.CatalogTrack))
		return
	}
	v := &viewer{s: s, r: r, sink: k, w: w, alias: r.id, q: make(chan object, viewerQueue), notify: true}
	if m.TrackName != hang.CatalogTrack && k.isAudio(m.TrackName) {
		v.prio = 0
	} else if m.TrackName != hang.CatalogTrack {
		v.prio = 1
	}
	v.ctx, v.cancel = context.WithCancel(s.ctx)
	r.handle(func(m message) {
		if _, ok := m.(*moqt.Unsubscribe); ok {
			v.finish(moqt.ErrorCode(0), "")
		}
	}, func() { v.finish(moqt.ErrorCode(0), "") })
	if err := r.send(v.subscribeOK(has, group, id)); err != nil {
		v.abandon()
		return
	}
	if !k.attach(v, m.TrackName) {
		v.finish(doneTrackEnded, "the stream ended")
	}
	s.goOwned(v.run)
	s.log.Info("moq: viewing", "stream", stream, "track", m.TrackName)
}

// watch is a session's view of one stream: its subscriptions to the
// stream's tracks share one member of the core's subscription, so a viewer
// with catalog, video and audio counts once.
type watch struct {
	stream string
	sub    *session.Subscription
	refs   int // the session's subscriptions to the stream, and ones being made
}

// watch joins the stream for one more SUBSCRIBE of the session; the first
// is admitted (kind play, protocol moq) and joins the core's subscription.
func (s *moqSession) watch(stream string, ns moqt.Namespace) (*watch, *refusal) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.mu.Lock()
	w := s.watches[stream]
	if w != nil {
		w.refs++
		s.mu.Unlock()
		return w, nil
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	out, admitted, err := s.srv.core.Admit(ctx, session.Admission{Kind: wire.KindPlay, Stream: stream, Path: ns.Path(), Protocol: "moq", Client: s.client})
	switch {
	case err != nil:
		return nil, &refusal{moqt.ReqInternalError, err.Error()}
	case !admitted:
		return nil, &refusal{s.loadCode(), fmt.Sprintf("throttled (%s)", out.Action)}
	}
	sub, err := s.srv.core.Subscribe(ctx, stream)
	if err != nil {
		s.srv.core.Refused()
		if errors.Is(err, session.ErrNotLive) {
			return nil, &refusal{moqt.ReqDoesNotExist, err.Error()}
		}
		return nil, s.refusalOf(err)
	}
	if !sub.Viewing() {
		sub.Leave(false)
		return nil, &refusal{moqt.ReqDoesNotExist, "the stream ended"}
	}
	w = &watch{stream: stream, sub: sub, refs: 1}
	s.mu.Lock()
	s.watches[stream] = w
	s.mu.Unlock()
	return w, nil
}

// unwatch ends one SUBSCRIBE's share of a watch; the last leaves the
// stream's subscription.
func (s *moqSession) unwatch(w *watch) {
	s.mu.Lock()
	w.refs--
	last := w.refs == 0
	if last && s.watches[w.stream] == w {
		delete(s.watches, w.stream)
	}
	s.mu.Unlock()
	if last {
		w.sub.Leave(true)
	}
}

func (k *sink) isAudio(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.names[name]
	return t != nil && t.audio
}

// subscribeOK is the answer in the session's draft. The track alias is the
// request id (unique in the session). In draft 16 it carries LARGEST_OBJECT
// when the track has content; in 17+ it does not, because @moq/net 0.1.9
// misreads a Location parameter there (sdk/moqt/RATIONALE.md). EXPIRES is
// absent: the subscription does not expire.
func (v *viewer) subscribeOK(has bool, group, id uint64) *moqt.SubscribeOK {
	ok := &moqt.SubscribeOK{RequestID: v.r.id, TrackAlias: v.alias}
	if has && v.s.v == moqt.Draft16 {
		ok.Params = moqt.Params{moqt.LargestObjectParam(v.s.v, moqt.Location{Group: group, Object: id})}
	}
	return ok
}

// abandon cleans up a viewer that never started.
func (v *viewer) abandon() {
	v.cancel()
	v.r.release()
	v.s.unwatch(v.w)
}

// offer queues an object without blocking; it runs under the sink's lock. A
// viewer that cannot take an object drops the rest of its group and resumes
// at the next group's first object.
func (v *viewer) offer(o object) {
	if o.id == 0 {
		v.dropping = false
	}
	if v.dropping {
		v.s.srv.m.dropped.Inc()
		return
	}
	select {
	case v.q <- o:
	default:
		v.dropping = true
		v.s.srv.m.dropped.Inc()
	}
}

// finish ends the viewer once: code and reason go in PUBLISH_DONE unless
// the client ended it (code 0, empty reason).
func (v *viewer) finish(code moqt.ErrorCode, reason string) {
	v.once.Do(func() {
		v.code, v.reason, v.notify = code, reason, reason != ""
		v.cancel()
	})
}

// run writes the viewer's objects until it ends, then cleans up: off the
// sink, PUBLISH_DONE (when we ended it and the session lives), the request
// released, the subscription left.
func (v *viewer) run() {
	v.write()
	v.once.Do(func() { v.notify = false }) // the session ended
	v.sink.detach(v)
	if v.notify && v.s.ctx.Err() == nil {
		_ = v.r.send(&moqt.PublishDone{RequestID: v.r.id, Status: v.code, StreamCount: v.streams.Load(), Reason: v.reason})
	}
	if st := v.r.stream; st != nil {
		_ = st.Close()
		st.CancelRead(uint64(moqt.ResetCancelled))
	}
	v.r.release()
	v.s.unwatch(v.w)
}

// write sends queued objects, a unidirectional subgroup stream per group
// (subgroup 0, FIN at the next group). A stream that cannot take an object
// within WriteTimeout is reset and the rest of its group dropped.
func (v *viewer) write() {
	var (
		st   transport.SendStream
		w    moqt.SubgroupWriter
		cur  uint64
		skip = false // the current group's stream failed
	)
	defer func() {
		if st != nil {
			_ = st.Close()
		}
	}()
	for {
		var o object
		select {
		case <-v.ctx.Done():
			return
		case o = <-v.q:
		}
		var buf []byte
		if st == nil && skip && o.group == cur {
			continue
		}
		if st == nil || o.group != cur {
			if st != nil {
				_ = st.Close()
				st = nil
			}
			if o.id != 0 {
				continue // a group whose start was dropped
			}
			ns, err := v.s.conn.OpenUniStreamSync(v.ctx)
			if err != nil {
				return
			}
			v.streams.Add(1)
			st, cur, skip = ns, o.group, false
			w = moqt.SubgroupWriter{V: v.s.v, Header: moqt.SubgroupHeader{TrackAlias: v.alias, GroupID: o.group,
				IDMode: moqt.SubgroupZero, HasPriority: true, Priority: v.prio}}
			buf = w.AppendHeader(nil)
		}
		buf, err := w.AppendObject(buf, moqt.Object{ID: o.id, Payload: o.payload})
		if err != nil {
			continue
		}
		_ = st.SetWriteDeadline(time.Now().Add(v.s.srv.cfg.WriteTimeout))
		if _, err := st.Write(buf); err != nil {
			if v.ctx.Err() != nil || v.s.ctx.Err() != nil {
				return
			}
			st.CancelWrite(uint64(moqt.ResetCancelled))
			st, skip = nil, true
			v.s.srv.m.dropped.Inc()
		}
	}
}
