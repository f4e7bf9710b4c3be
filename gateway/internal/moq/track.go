package moq

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// track is one track a session receives: a subscription of ours (announce
// flow) or a client's PUBLISH. Its objects arrive on data streams under alias.
type track struct {
	s       *moqSession
	b       *broadcast
	name    string
	alias   uint64
	req     *request
	catalog bool

	got  atomic.Bool // an object arrived
	once sync.Once   // ended, by either side

	mu       sync.Mutex
	timer    *time.Timer
	catGroup uint64 // the catalog group applied
	catSeen  bool
}

func (s *moqSession) addTrack(tr *track) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.tracks[tr.alias]; dup {
		return closeWith(moqt.CodeDuplicateTrackAlias, "track alias %d is in use", tr.alias)
	}
	s.tracks[tr.alias] = tr
	return nil
}

func (s *moqSession) dropTrack(tr *track) {
	s.mu.Lock()
	if s.tracks[tr.alias] == tr {
		delete(s.tracks, tr.alias)
	}
	s.mu.Unlock()
}

// lookupTrack finds the track of an alias, waiting up to a second: a data
// stream may overtake the PUBLISH or SUBSCRIBE_OK that names its alias.
func (s *moqSession) lookupTrack(alias uint64) *track {
	for deadline := time.Now().Add(time.Second); ; {
		s.mu.Lock()
		tr := s.tracks[alias]
		s.mu.Unlock()
		if tr != nil || time.Now().After(deadline) || s.ctx.Err() != nil {
			return tr
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watch ends a track that sends nothing within TrackTimeout.
func (tr *track) watch() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.timer = time.AfterFunc(tr.s.srv.cfg.TrackTimeout, func() {
		if !tr.got.Load() {
			tr.s.log.Info("moq: track sent nothing", "stream", tr.b.stream, "track", tr.name, "after", tr.s.srv.cfg.TrackTimeout)
			tr.cancel(moqt.ReqTimeout)
		}
	})
}

// onResponse follows our SUBSCRIBE: SUBSCRIBE_OK (whose draft 16 alias may
// differ from our request id), REQUEST_ERROR, PUBLISH_DONE.
func (tr *track) onResponse(m message) {
	switch m := m.(type) {
	case *moqt.SubscribeOK:
		if m.TrackAlias == tr.alias {
			return
		}
		s := tr.s
		s.mu.Lock()
		_, dup := s.tracks[m.TrackAlias]
		if !dup {
			delete(s.tracks, tr.alias)
			tr.alias = m.TrackAlias
			s.tracks[tr.alias] = tr
		}
		s.mu.Unlock()
		if dup {
			s.fail(closeWith(moqt.CodeDuplicateTrackAlias, "SUBSCRIBE_OK with track alias %d in use", m.TrackAlias))
		}
	case *moqt.RequestError:
		tr.req.release()
		tr.ended(fmt.Sprintf("subscription refused: code 0x%x %s", uint64(m.Code), m.Reason))
	case *moqt.PublishDone:
		tr.req.release()
		tr.ended(fmt.Sprintf("publish done: status 0x%x %s", uint64(m.Status), m.Reason))
	}
}

// ended is the client ending the track. The catalog's end ends the broadcast;
// a media track is subscribed again if a later catalog lists it.
func (tr *track) ended(reason string) {
	first := false
	tr.once.Do(func() {
		first = true
		tr.stop()
		tr.s.log.Debug("moq: track ended", "stream", tr.b.stream, "track", tr.name, "reason", reason)
		tr.b.mu.Lock()
		if tr.b.media[tr.name] == tr {
			delete(tr.b.media, tr.name)
		}
		tr.b.mu.Unlock()
	})
	if first && tr.catalog {
		tr.b.end("catalog ended: "+reason, nil) // outside once: end cancels this track too
	}
}

// cancel ends the track from our side with a request error code.
func (tr *track) cancel(code moqt.ErrorCode) {
	tr.once.Do(func() {
		tr.stop()
		tr.req.unsubscribe(code)
		tr.b.mu.Lock()
		if tr.b.media[tr.name] == tr {
			delete(tr.b.media, tr.name)
		}
		tr.b.mu.Unlock()
	})
}

func (tr *track) stop() {
	tr.mu.Lock()
	if tr.timer != nil {
		tr.timer.Stop()
	}
	tr.mu.Unlock()
	tr.s.dropTrack(tr)
}

// onObject takes one object of group: the catalog's first object of a new
// group is a new catalog; a media object is a hang frame for its RTP track.
func (tr *track) onObject(group uint64, o moqt.Object) {
	tr.got.Store(true)
	if o.Status != moqt.StatusNormal || len(o.Payload) == 0 {
		return
	}
	if tr.catalog {
		tr.mu.Lock()
		fresh := o.ID == 0 && (!tr.catSeen || group > tr.catGroup)
		if fresh {
			tr.catGroup, tr.catSeen = group, true
		}
		tr.mu.Unlock()
		if !fresh {
			return
		}
		c, err := hang.ParseCatalog(o.Payload)
		if err != nil {
			// moq-dev's publisher opens with a catalog without renditions,
			// which hang refuses; the next group brings the real one.
			tr.s.log.Debug("moq: catalog not usable yet", "stream", tr.b.stream, "err", err)
			return
		}
		tr.b.onCatalog(c)
		return
	}
	out := tr.b.output(tr.name)
	if out != nil && o.ID == 0 {
		out.awaitTurn(tr.s.ctx, group, groupHold)
	}
	f, err := hang.ParseFrame(o.Payload)
	if out == nil || err != nil || len(f.Payload) == 0 || !out.frame(group, o.ID, f) {
		tr.s.srv.m.dropped.Inc()
	}
}

// groupEnded tells the track's RTP output that a group's stream has ended.
func (tr *track) groupEnded(group uint64) {
	if tr.catalog {
		return
	}
	tr.b.mu.Lock()
	out := tr.b.out[tr.name]
	tr.b.mu.Unlock()
	if out != nil {
		out.groupEnded(group)
	}
}

// acceptData serves the client's unidirectional data streams, at most
// MaxDataStreams at once.
func (s *moqSession) acceptData() {
	for {
		rs, err := s.conn.AcceptUniStream(s.ctx)
		if err != nil {
			return
		}
		s.mu.Lock()
		full := s.dataOpen >= s.srv.cfg.MaxDataStreams
		if !full {
			s.dataOpen++
		}
		s.mu.Unlock()
		if full {
			s.stopStream(rs, s.resetLoad())
			continue
		}
		s.goOwned(func() {
			defer func() {
				s.mu.Lock()
				s.dataOpen--
				s.mu.Unlock()
			}()
			if err := s.readData(rs); err != nil {
				s.fail(err)
			}
		})
	}
}

// resetLoad is EXCESSIVE_LOAD where the draft has it (17+), else CANCELLED.
func (s *moqSession) resetLoad() moqt.ErrorCode {
	if s.v == moqt.Draft16 {
		return moqt.ResetCancelled
	}
	return moqt.ResetExcessiveLoad
}

func (s *moqSession) stopStream(rs transport.ReceiveStream, code moqt.ErrorCode) {
	rs.CancelRead(uint64(code))
	s.srv.m.streamError(code)
}

// readData reads one subgroup stream's objects into its track. A malformed
// stream ends the session; an object over MaxObjectBytes ends its track's
// subscription; a stream silent for StreamIdleTimeout is stopped.
func (s *moqSession) readData(rs transport.ReceiveStream) error {
	idle := s.srv.cfg.StreamIdleTimeout
	armed := time.Now()
	_ = rs.SetReadDeadline(armed.Add(idle))
	// Buffered, a varint is a byte from memory rather than a call into the
	// QUIC stream: an object header is four or five of them.
	br := streamReaders.Get().(*bufio.Reader)
	br.Reset(rs)
	defer func() { br.Reset(nil); streamReaders.Put(br) }()
	t, err := moqt.ReadVarint(br, s.v)
	if err != nil {
		return s.streamFailed(rs, nil, err)
	}
	if !moqt.IsSubgroupStream(t, s.v) {
		// FETCH streams answer FETCH, which this endpoint never sends.
		return closeWith(moqt.CodeProtocolViolation, "unidirectional stream of type 0x%x", t)
	}
	sg, err := moqt.NewSubgroupReader(br, s.v, t, s.srv.cfg.MaxObjectBytes)
	if err != nil {
		return s.streamFailed(rs, nil, err)
	}
	tr := s.lookupTrack(sg.Header.TrackAlias)
	if tr == nil {
		s.stopStream(rs, moqt.ResetCancelled) // a track that ended meanwhile
		return nil
	}
	// However the stream ends, its group has no more frames to come.
	defer tr.groupEnded(sg.Header.GroupID)
	for {
		// The idle deadline moves on with the objects, re-armed once a
		// quarter of it has passed rather than for every object.
		if now := time.Now(); now.Sub(armed) > idle/4 {
			armed = now
			_ = rs.SetReadDeadline(now.Add(idle))
		}
		o, err := sg.ReadObject()
		if err != nil {
			return s.streamFailed(rs, tr, err)
		}
		s.srv.m.objects.Inc()
		s.srv.m.bytes.Add(len(o.Payload))
		tr.onObject(sg.Header.GroupID, o)
	}
}

// streamReaders buffer data streams while they are read; a stream lives for
// one group, often one frame.
var streamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// streamFailed sorts a data stream's end: a clean end or a reset by the
// client is nothing; a protocol error ends the session; an object over the
// limit ends the track; silence stops the stream.
func (s *moqSession) streamFailed(rs transport.ReceiveStream, tr *track, err error) error {
	var pe *moqt.ProtocolError
	var te interface{ Timeout() bool }
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &pe):
		return err
	case errors.Is(err, moqt.ErrObjectTooLarge):
		s.stopStream(rs, s.resetLoad())
		if tr != nil {
			s.log.Info("moq: object over the limit", "stream", tr.b.stream, "track", tr.name, "limit", s.srv.cfg.MaxObjectBytes)
			tr.cancel(moqt.ReqExcessiveLoad)
		}
	case errors.As(err, &te) && te.Timeout():
		s.stopStream(rs, moqt.ResetCancelled)
	}
	return nil
}
