package push

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// Broadcast is one published stream: its catalog and media tracks, served to
// the server's subscriptions until Close.
type Broadcast struct {
	s      *Session
	stream string
	ns     moqt.Namespace
	reqID  uint64
	req    *quic.Stream // draft 17+: the PUBLISH_NAMESPACE request stream
	tracks map[string]*track
	cat    *track

	closeOnce sync.Once
	mu        sync.Mutex
	done      bool
	err       error // set when the server withdrew its acceptance
}

// Publish announces a broadcast named stream (a sluice stream id:
// [A-Za-z0-9._~-], 1–128 bytes; the MoQT namespace is that one field) with
// tracks, and serves the server's subscriptions to its catalog and tracks
// until the Broadcast is closed. It returns once the server accepts
// (REQUEST_OK); a refusal is a *RequestError.
func (s *Session) Publish(ctx context.Context, stream string, tracks ...Track) (*Broadcast, error) {
	if err := checkStreamID(stream); err != nil {
		return nil, err
	}
	defaulted := make([]Track, len(tracks))
	for i, t := range tracks {
		defaulted[i] = t.withDefaults()
	}
	cat, err := catalog(defaulted)
	if err != nil {
		return nil, err
	}
	b := &Broadcast{s: s, stream: stream, ns: moqt.Namespace{stream}, tracks: map[string]*track{}}
	b.cat = newTrack(hang.CatalogTrack, 0, s.opts.MaxQueuedBytes)
	b.cat.static(cat)
	for _, t := range defaulted {
		prio := uint8(128) // audio before video when both wait
		if !t.Codec.video() {
			prio = 64
		}
		nt := newTrack(t.Name, prio, s.opts.MaxQueuedBytes)
		if t.Codec == Opus {
			nt.span = max(s.opts.AudioGroup, 0)
		}
		b.tracks[t.Name] = nt
	}
	if err := s.gone(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if _, dup := s.broadcasts[stream]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("push: %q is already published on this session", stream)
	}
	// Registered before the announcement: a draft 17+ server may subscribe
	// on another stream before its REQUEST_OK arrives here.
	s.broadcasts[stream] = b
	s.mu.Unlock()
	if err := b.announce(ctx); err != nil {
		b.shut(false)
		return nil, err
	}
	s.log.Info("published", "stream", stream, "tracks", len(tracks))
	return b, nil
}

// checkStreamID applies sluice's stream id rule.
func checkStreamID(id string) error {
	if len(id) == 0 || len(id) > 128 {
		return fmt.Errorf("push: stream id of %d bytes (want 1..128)", len(id))
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-'
		if !ok {
			return fmt.Errorf("push: stream id %q: byte %q not in [A-Za-z0-9._~-]", id, c)
		}
	}
	return nil
}

func (b *Broadcast) what() string { return fmt.Sprintf("PUBLISH_NAMESPACE %q", b.stream) }

// announce sends PUBLISH_NAMESPACE and waits for the server's answer.
func (b *Broadcast) announce(ctx context.Context) error {
	s := b.s
	id, err := s.allocID(ctx)
	if err != nil {
		return err
	}
	b.reqID = id
	msg := &moqt.PublishNamespace{RequestID: id, Namespace: b.ns}
	if s.opts.Token != "" {
		msg.Params = moqt.Params{{Type: moqt.ParamAuthToken, Bytes: authToken(s.v, s.opts.Token)}}
	}
	var answer moqt.Message
	if s.v == moqt.Draft16 {
		ch := make(chan moqt.Message, 1)
		s.mu.Lock()
		s.pending[id] = ch
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.pending, id)
			s.mu.Unlock()
		}()
		if err := s.writeCtrl(msg); err != nil {
			return err
		}
		select {
		case answer = <-ch:
		case <-ctx.Done():
			return fmt.Errorf("push: waiting for the answer to %s: %w", b.what(), ctx.Err())
		case <-s.conn.Context().Done():
			return s.gone()
		}
	} else {
		if answer, err = b.announceOnStream(ctx, msg); err != nil {
			return err
		}
	}
	switch a := answer.(type) {
	case *moqt.RequestOK:
		if b.req != nil {
			s.wg.Add(1)
			go b.watchRequest()
		}
		return nil
	case *moqt.RequestError:
		return &RequestError{Request: b.what(), Code: a.Code, Reason: a.Reason, RetryAfter: a.RetryInterval}
	}
	err = &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("%T answers %s", answer, b.what())}
	s.abort(moqt.CodeProtocolViolation, err)
	return err
}

// announceOnStream is draft 17+'s PUBLISH_NAMESPACE on its own stream.
func (b *Broadcast) announceOnStream(ctx context.Context, msg *moqt.PublishNamespace) (moqt.Message, error) {
	s := b.s
	str, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("push: open a stream for %s: %w", b.what(), s.errOr(err))
	}
	b.req = str
	if _, err := str.Write(msg.Append(nil, s.v)); err != nil {
		return nil, fmt.Errorf("push: write %s: %w", b.what(), s.errOr(err))
	}
	stop := context.AfterFunc(ctx, func() { _ = str.SetReadDeadline(time.Now()) })
	answer, err := moqt.ReadMessage(str, s.v, controlLimit)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("push: waiting for the answer to %s: %w", b.what(), ctx.Err())
		}
		return nil, fmt.Errorf("push: read the answer to %s: %w", b.what(), s.errOr(err))
	}
	return answer, nil
}

// watchRequest notices the server ending the announcement (draft 17+): its
// side of the request stream ends, with or without a REQUEST_ERROR.
func (b *Broadcast) watchRequest() {
	defer b.s.wg.Done()
	m, err := moqt.ReadMessage(b.req, b.s.v, controlLimit)
	if re, ok := m.(*moqt.RequestError); ok && err == nil {
		b.cancelled(&RequestError{Request: b.what(), Code: re.Code, Reason: re.Reason})
		return
	}
	b.cancelled(&RequestError{Request: b.what(), Code: moqt.ReqInternalError, Reason: "server closed the announcement"})
}

// cancelled is the server withdrawing its acceptance of the broadcast.
func (b *Broadcast) cancelled(err *RequestError) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.err = err
	b.mu.Unlock()
	b.s.log.Info("server ended the broadcast", "stream", b.stream, "err", err)
	b.s.wg.Add(1)
	go func() {
		defer b.s.wg.Done()
		b.closeOnce.Do(func() { b.shut(false) })
	}()
}

// sessionGone ends the broadcast's subscriptions when the connection ended.
func (b *Broadcast) sessionGone() {
	for _, t := range b.allTracks() {
		for _, sub := range t.close() {
			sub.end(moqt.DoneGoingAway, "session ended", true)
		}
	}
}

func (b *Broadcast) allTracks() []*track {
	ts := []*track{b.cat}
	for _, t := range b.tracks {
		ts = append(ts, t)
	}
	return ts
}

// WriteFrame sends one frame of the named track at presentation time ts (any
// origin; hang carries microseconds). A keyframe starts a new group, which a
// subscriber can start decoding at; every other frame joins the current
// group. Every Opus packet is a keyframe, and starts a group once the
// current one spans Options.AudioGroup. The payload is copied. WriteFrame
// does not wait for the network: a subscriber that falls behind loses whole
// groups (Options.MaxQueuedBytes).
func (b *Broadcast) WriteFrame(track string, ts time.Duration, keyframe bool, payload []byte) error {
	t := b.tracks[track]
	if t == nil {
		return fmt.Errorf("push: %q has no track %q", b.stream, track)
	}
	if ts < 0 {
		return fmt.Errorf("push: negative timestamp %s", ts)
	}
	b.mu.Lock()
	done, err := b.done, b.err
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if done {
		return ErrClosed
	}
	if err := b.s.gone(); err != nil {
		return err
	}
	obj := hang.Frame{TimestampMicros: uint64(ts / time.Microsecond), Payload: payload}.Append(make([]byte, 0, 8+len(payload)))
	return t.write(obj, ts, keyframe)
}

// Close ends the broadcast: every subscription gets the frames already
// queued for it (for up to Options.CloseTimeout) and PUBLISH_DONE, then the
// announcement is withdrawn (PUBLISH_NAMESPACE_DONE in draft 16, the
// request stream's end in 17+). Safe to call more than once.
func (b *Broadcast) Close() error {
	b.closeOnce.Do(func() { b.shut(true) })
	return nil
}

// shut ends the subscriptions, draining them if drain, withdraws the
// announcement and unregisters the broadcast.
func (b *Broadcast) shut(drain bool) {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	var subs []*subscription
	for _, t := range b.allTracks() {
		subs = append(subs, t.close()...)
	}
	for _, sub := range subs {
		sub.end(moqt.DoneTrackEnded, "broadcast ended", !drain)
	}
	timeout := time.NewTimer(b.s.opts.CloseTimeout)
	defer timeout.Stop()
	for _, sub := range subs {
		select {
		case <-sub.done:
		case <-timeout.C:
			for _, sub := range subs {
				sub.end(moqt.DoneTrackEnded, "broadcast ended", true)
			}
		}
		<-sub.done
	}
	s := b.s
	if s.gone() == nil {
		if s.v == moqt.Draft16 {
			_ = s.writeCtrl(&moqt.PublishNamespaceDone{RequestID: b.reqID})
		} else if b.req != nil {
			_ = b.req.Close()
			b.req.CancelRead(0)
		}
	}
	s.mu.Lock()
	if s.broadcasts[b.stream] == b {
		delete(s.broadcasts, b.stream)
	}
	s.mu.Unlock()
}

// subscribe answers a SUBSCRIBE (req is its stream in draft 17+, nil in 16)
// and starts serving it; it returns nil when it refused the request.
func (s *Session) subscribe(m *moqt.Subscribe, req *quic.Stream) *subscription {
	s.mu.Lock()
	b := s.broadcasts[m.Namespace.Path()]
	s.mu.Unlock()
	var t *track
	if b != nil && b.ns.Equal(m.Namespace) {
		if m.TrackName == hang.CatalogTrack {
			t = b.cat
		} else {
			t = b.tracks[m.TrackName]
		}
	}
	if t == nil {
		s.log.Info("refused a subscription", "namespace", m.Namespace.Path(), "track", m.TrackName)
		s.refuseSubscribe(m.RequestID, req, moqt.ReqDoesNotExist, "no such track")
		return nil
	}
	sub := newSubscription(s, t, m.RequestID, req)
	if !t.add(sub, startsAtGroup(m.Params)) {
		s.refuseSubscribe(m.RequestID, req, moqt.ReqDoesNotExist, "broadcast ended")
		return nil
	}
	ok := &moqt.SubscribeOK{RequestID: m.RequestID, TrackAlias: m.RequestID,
		Params: moqt.Params{{Type: moqt.ParamGroupOrder, Value: 1}}}
	var err error
	if req == nil {
		s.mu.Lock()
		s.subs[m.RequestID] = sub
		s.mu.Unlock()
		err = s.writeCtrl(ok)
	} else {
		_, err = req.Write(ok.Append(nil, s.v))
	}
	s.wg.Add(1)
	go sub.run()
	if err != nil {
		sub.end(moqt.DoneInternalError, "", true)
		return nil
	}
	s.log.Debug("subscribed", "stream", b.stream, "track", t.name, "request", m.RequestID)
	return sub
}

// startsAtGroup reports whether a subscription starts with the current group
// (from its keyframe) rather than the next one. MoQT's default filter
// (Largest Object) would start mid-group, which no decoder can use, so it is
// served from the group's start as moq-dev's publishers do; only Next Group
// Start (filter type 0x1) waits for the next keyframe.
func startsAtGroup(ps moqt.Params) bool {
	p, ok := ps.Get(moqt.ParamSubscriptionFilter)
	return !ok || len(p.Bytes) == 0 || p.Bytes[0] != 0x1
}

func (s *Session) refuseSubscribe(id uint64, req *quic.Stream, code moqt.ErrorCode, reason string) {
	if req != nil {
		s.refuse(req, code, reason)
		return
	}
	_ = s.writeCtrl(&moqt.RequestError{RequestID: id, Code: code, Reason: reason})
}
