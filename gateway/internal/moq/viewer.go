package moq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq/egress"
	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// viewer is one client SUBSCRIBE to a track of a live stream: the objects
// its sink offers are queued (without blocking the sink) and written by its
// own goroutine, a subgroup stream per group, under the SUBSCRIBE's request
// id as track alias. It is the sink's egress.Viewer.
type viewer struct {
	*egress.Queue
	s     *moqSession
	r     *request
	sink  *egress.Sink
	w     *watch
	alias uint64
	prio  uint8

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	code   moqt.ErrorCode
	reason string
	notify bool // send PUBLISH_DONE (false: the client ended it, or the session ended)
}

// End implements egress.Viewer: the stream is over.
func (v *viewer) End(reason string) { v.finish(moqt.DoneTrackEnded, reason) }

// onSubscribe serves a viewer's SUBSCRIBE: admission (kind play, protocol
// moq), the stream's shared subscription, the moq sink on it, SUBSCRIBE_OK,
// then the track's objects from the current group on.
func (s *moqSession) onSubscribe(r *request, m *moqt.Subscribe) {
	stream, err := streamOf(m.Namespace)
	if err != nil {
		r.refuse(moqt.ReqDoesNotExist, err.Error())
		return
	}
	tok, _ := m.Params.Get(moqt.ParamAuthToken)
	if ref := s.authorize(s.ctx, wire.KindPlay, stream, m.Namespace, tok.Bytes); ref != nil {
		r.refuse(ref.code, ref.reason)
		return
	}
	w, ref := s.watch(stream, m.Namespace)
	if ref != nil {
		r.refuse(ref.code, ref.reason)
		return
	}
	sub := w.sub
	k := sub.Sink("moq", func() session.Sink {
		return egress.New(egress.Config{Stream: stream, Log: s.srv.log, Keyframe: sub.Keyframe, Dropped: s.srv.m.dropped.Inc})
	}).(*egress.Sink)
	ts, served := k.Track(m.TrackName)
	if !served {
		s.unwatch(w)
		r.refuse(moqt.ReqDoesNotExist, fmt.Sprintf("stream %s has no track %q (its tracks are in %s)", stream, m.TrackName, hang.CatalogTrack))
		return
	}
	v := &viewer{Queue: egress.NewQueue(egress.QueueSize), s: s, r: r, sink: k, w: w, alias: r.id, notify: true}
	if m.TrackName != hang.CatalogTrack && !ts.Audio {
		v.prio = 1 // audio and the catalog first
	}
	v.ctx, v.cancel = context.WithCancel(s.ctx)
	r.handle(func(m message) {
		if _, ok := m.(*moqt.Unsubscribe); ok {
			v.finish(moqt.ErrorCode(0), "")
		}
	}, func() { v.finish(moqt.ErrorCode(0), "") })
	if err := r.send(v.subscribeOK(ts)); err != nil {
		v.abandon()
		return
	}
	if !k.Attach(v, m.TrackName) {
		v.End("the stream ended")
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

// subscribeOK is the answer in the session's draft. The track alias is the
// request id (unique in the session). In draft 16 it carries LARGEST_OBJECT
// when the track has content; in 17+ it does not, because @moq/net 0.1.9
// misreads a Location parameter there (sdk/moqt/RATIONALE.md). EXPIRES is
// absent: the subscription does not expire.
func (v *viewer) subscribeOK(ts egress.TrackState) *moqt.SubscribeOK {
	ok := &moqt.SubscribeOK{RequestID: v.r.id, TrackAlias: v.alias}
	if ts.Content && v.s.v == moqt.Draft16 {
		ok.Params = moqt.Params{moqt.LargestObjectParam(v.s.v, moqt.Location{Group: ts.Group, Object: ts.Object})}
	}
	return ok
}

// abandon cleans up a viewer that never started.
func (v *viewer) abandon() {
	v.cancel()
	v.r.release()
	v.s.unwatch(v.w)
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
	v.Write(v.ctx, egress.Stream{V: v.s.v, Alias: v.alias, Priority: v.prio, Timeout: v.s.srv.cfg.WriteTimeout,
		Dropped: v.s.srv.m.dropped.Inc, Open: v.s.conn.OpenUniStreamSync})
	v.once.Do(func() { v.notify = false }) // the session ended
	v.sink.Detach(v)
	if v.notify && v.s.ctx.Err() == nil {
		_ = v.r.send(&moqt.PublishDone{RequestID: v.r.id, Status: v.code, StreamCount: v.Streams(), Reason: v.reason})
	}
	if st := v.r.stream; st != nil {
		_ = st.Close()
		st.CancelRead(uint64(moqt.ResetCancelled))
	}
	v.r.release()
	v.s.unwatch(v.w)
}
