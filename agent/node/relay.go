package node

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/streamid"
)

// Timings of the relay.
const (
	helloTimeout = 3 * time.Second
	// orphanGrace is how long a stream waits for its publisher to (re)attach while
	// it has subscribers but no publisher — after a node replacement the viewers'
	// gateways may reach the new node before the publisher's does.
	orphanGrace = 10 * time.Second
	ringSize    = 1024 // packets kept per track to answer NACKs, ~10 s of audio or ~3 s of video
)

// Application error codes on media link connections.
const (
	codeEnded   quic.ApplicationErrorCode = 0 // the stream ended normally
	codeRefused quic.ApplicationErrorCode = 1 // the hello was refused
	codeReplace quic.ApplicationErrorCode = 2 // a newer publisher link took over
)

// relay is the "relay" purpose: it receives each stream's RTP from its publisher's
// gateway and fans it out to every subscribed gateway, answers their NACKs from a
// short history and passes their keyframe requests to the publisher.
type relay struct {
	log      *slog.Logger
	draining atomic.Bool
	live     atomic.Int64 // streams with a publisher attached

	mu      sync.Mutex
	streams map[string]*rstream
}

type rstream struct {
	id string

	mu      sync.Mutex
	pub     *quic.Conn
	pubGen  uint64
	tracks  []medialink.Track
	expect  int
	subs    map[*rsub]struct{}
	subList []*rsub // copy of subs for the packet path, rebuilt on change
	orphan  *time.Timer

	rings [medialink.MaxTracks]ring
}

type rsub struct {
	conn *quic.Conn
	path *medialink.Path
	ctrl *quic.Stream
	wmu  sync.Mutex // serialises control writes
}

// sendMedia sends one framed RTP packet to the subscriber.
func (sub *rsub) sendMedia(p []byte) { _ = sub.path.SendRTP(sub.conn, p) }

// refreshLocked rebuilds the subscriber slice the packet path reads; s.mu is held.
func (s *rstream) refreshLocked() {
	list := make([]*rsub, 0, len(s.subs))
	for sub := range s.subs {
		list = append(list, sub)
	}
	s.subList = list
}

type ring struct {
	mu   sync.Mutex
	pkts [ringSize][]byte
}

func newRelay(log *slog.Logger) *relay {
	return &relay{log: log, streams: map[string]*rstream{}}
}

func (r *relay) Streams() int { return int(r.live.Load()) }
func (r *relay) Drain()       { r.draining.Store(true) }

// Serve accepts media links until ctx ends.
func (r *relay) Serve(ctx context.Context, ep *medialink.Endpoint, ln *quic.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = ep.Serve(ctx)
	}()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.serveConn(ctx, ep, c)
		}()
	}
}

func (r *relay) serveConn(ctx context.Context, ep *medialink.Endpoint, c *quic.Conn) {
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	ctrl, err := c.AcceptStream(hctx)
	cancel()
	if err != nil {
		_ = c.CloseWithError(codeRefused, "no control stream")
		return
	}
	_ = ctrl.SetReadDeadline(time.Now().Add(helloTimeout))
	hello, err := medialink.ReadMsg(ctrl)
	if err == nil && hello.T != medialink.MsgHello {
		err = errors.New("first message is not hello")
	}
	if err == nil {
		err = streamid.Validate(hello.Stream)
	}
	if err == nil && hello.Role == medialink.RolePublish && r.draining.Load() {
		err = errors.New("node is draining")
	}
	if err != nil {
		_ = medialink.WriteMsg(ctrl, &medialink.Msg{T: medialink.MsgError, Error: err.Error()})
		_ = c.CloseWithError(codeRefused, err.Error())
		return
	}
	_ = ctrl.SetReadDeadline(time.Time{})
	s := r.stream(hello.Stream)
	var path *medialink.Path
	if hello.Role == medialink.RolePublish {
		path = ep.NewPath(s.onPacket)
	} else {
		path = ep.NewPath(nil) // a subscriber's path only sends
	}
	defer path.Close()
	err = path.Connect(c, hello.Path, hello.Port, false)
	if err == nil {
		err = medialink.WriteMsg(ctrl, &medialink.Msg{T: medialink.MsgOK, Path: path.ID(), Port: ep.MediaPort()})
	}
	if err != nil {
		_ = c.CloseWithError(codeRefused, err.Error())
		r.forget(s)
		return
	}
	if hello.Role == medialink.RolePublish {
		r.publish(ctx, s, c, ctrl)
	} else {
		r.subscribe(ctx, s, c, path, ctrl)
	}
}

// onPacket handles one framed packet from the publisher, from its media path or
// its link: it keeps RTP for NACKs and fans it out.
func (s *rstream) onPacket(p []byte) {
	typ, track, payload, err := medialink.ParsePacket(p)
	if err != nil || typ != medialink.TypeRTP {
		return
	}
	s.rings[track].put(binary.BigEndian.Uint16(payload[2:4]), p)
	// Fan out inline: a hand-off to a goroutine per subscriber costs more than the
	// send itself (RATIONALE.md); a send is one sealed UDP packet.
	s.mu.Lock()
	subs := s.subList
	s.mu.Unlock()
	for _, sub := range subs {
		sub.sendMedia(p)
	}
}

// stream returns the stream entry, making it if needed.
func (r *relay) stream(id string) *rstream {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.streams[id]
	if s == nil {
		s = &rstream{id: id, subs: map[*rsub]struct{}{}}
		r.streams[id] = s
	}
	return s
}

// forget removes s if it has neither publisher nor subscribers.
func (r *relay) forget(s *rstream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub == nil && len(s.subs) == 0 && r.streams[s.id] == s {
		delete(r.streams, s.id)
	}
}

func (r *relay) publish(ctx context.Context, s *rstream, c *quic.Conn, ctrl *quic.Stream) {
	s.mu.Lock()
	old := s.pub
	s.pub = c
	s.pubGen++
	gen := s.pubGen
	if s.orphan != nil {
		s.orphan.Stop()
		s.orphan = nil
	}
	s.mu.Unlock()
	if old != nil {
		_ = old.CloseWithError(codeReplace, "replaced by a newer publisher link")
	} else {
		r.live.Add(1)
	}
	r.log.Info("relay: publisher attached", "stream", s.id, "remote", c.RemoteAddr().String())

	go func() { // control: track announcements
		for {
			m, err := medialink.ReadMsg(ctrl)
			if err != nil {
				return
			}
			if m.T == medialink.MsgTracks {
				s.setTracks(m.Tracks, m.Expect)
			}
		}
	}()

	err := medialink.ReadPackets(ctx, c, s.onPacket) // packets too large for the media path

	s.mu.Lock()
	current := s.pubGen == gen
	if current {
		s.pub = nil
	}
	s.mu.Unlock()
	if !current {
		return // a newer link took over
	}
	r.live.Add(-1)
	var appErr *quic.ApplicationError
	ended := errors.As(err, &appErr) && appErr.ErrorCode == codeEnded && appErr.Remote
	r.log.Info("relay: publisher detached", "stream", s.id, "ended", ended, "err", err)
	if ended || ctx.Err() != nil {
		s.end()
		r.forget(s)
		return
	}
	// The link dropped without an end: wait for the publisher to come back.
	s.mu.Lock()
	s.orphan = time.AfterFunc(orphanGrace, func() { s.end(); r.forget(s) })
	s.mu.Unlock()
}

func (s *rstream) setTracks(tracks []medialink.Track, expect int) {
	s.mu.Lock()
	s.tracks, s.expect = tracks, expect
	subs := make([]*rsub, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.send(&medialink.Msg{T: medialink.MsgTracks, Tracks: tracks, Expect: expect})
	}
}

// end tells every subscriber the stream is over and closes their links.
func (s *rstream) end() {
	s.mu.Lock()
	subs := s.subs
	s.subs = map[*rsub]struct{}{}
	s.subList = nil
	if s.orphan != nil {
		s.orphan.Stop()
		s.orphan = nil
	}
	s.mu.Unlock()
	for sub := range subs {
		sub.send(&medialink.Msg{T: medialink.MsgGone})
		_ = sub.conn.CloseWithError(codeEnded, "stream ended")
	}
}

func (r *relay) subscribe(ctx context.Context, s *rstream, c *quic.Conn, path *medialink.Path, ctrl *quic.Stream) {
	sub := &rsub{conn: c, path: path, ctrl: ctrl}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.refreshLocked()
	tracks, expect := s.tracks, s.expect
	if s.pub == nil && s.orphan == nil {
		s.orphan = time.AfterFunc(orphanGrace, func() { s.end(); r.forget(s) })
	}
	s.mu.Unlock()
	if len(tracks) > 0 {
		sub.send(&medialink.Msg{T: medialink.MsgTracks, Tracks: tracks, Expect: expect})
	}
	r.log.Info("relay: subscriber attached", "stream", s.id, "remote", c.RemoteAddr().String())

	_ = medialink.ReadPackets(ctx, c, func(p []byte) {
		typ, track, payload, err := medialink.ParsePacket(p)
		if err != nil {
			return
		}
		switch typ {
		case medialink.TypePLI:
			s.mu.Lock()
			pub := s.pub
			s.mu.Unlock()
			if pub != nil {
				_ = pub.SendDatagram(p)
			}
		case medialink.TypeNACK:
			for i := 0; i+1 < len(payload); i += 2 {
				if pkt := s.rings[track].get(binary.BigEndian.Uint16(payload[i:])); pkt != nil {
					sub.sendMedia(pkt)
				}
			}
		}
	})
	_ = c.CloseWithError(codeEnded, "")
	s.mu.Lock()
	delete(s.subs, sub)
	s.refreshLocked()
	s.mu.Unlock()
	r.forget(s)
}

func (sub *rsub) send(m *medialink.Msg) {
	sub.wmu.Lock()
	defer sub.wmu.Unlock()
	_ = sub.ctrl.SetWriteDeadline(time.Now().Add(time.Second))
	_ = medialink.WriteMsg(sub.ctrl, m)
}

func (g *ring) put(seq uint16, p []byte) {
	g.mu.Lock()
	g.pkts[seq%ringSize] = p
	g.mu.Unlock()
}

// get returns the packet with sequence number seq, if it is still held.
func (g *ring) get(seq uint16) []byte {
	g.mu.Lock()
	p := g.pkts[seq%ringSize]
	g.mu.Unlock()
	if len(p) >= 1+12 && binary.BigEndian.Uint16(p[3:5]) == seq {
		return p
	}
	return nil
}
