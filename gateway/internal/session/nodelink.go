package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/internal/medialink"
)

// nodeLink is one direction of a stream's media between this gateway and the node
// that carries it: a publication's uplink or a subscription's downlink. It owns
// the stream's placement and keeps the QUIC media link to that node up, finding the
// stream again (relocate) whenever the link drops — the node was replaced, or the
// agent lost — until its context ends or the node says the stream is gone.
//
// The hooks are set before run and called from the link's goroutines; they must
// not block.
type nodeLink struct {
	core   *Core
	stream string
	role   string // medialink.RolePublish or medialink.RoleSubscribe

	// onPacket receives the framed packets the node sends: feedback datagrams to
	// an uplink, RTP to a downlink (on the media path and, when too large for it,
	// on the connection).
	onPacket func(pkt []byte)
	// onAttach runs after every (re-)attach, with the link ready to use.
	onAttach func()
	// onTracks receives the node's track announcements (downlinks).
	onTracks func(tracks []medialink.Track, expect int)
	// relocate finds where the stream is after the link was lost from old.
	relocate func(ctx context.Context, old placement) (placement, error)
	// giveUp ends the link when it could not be re-attached for this long; zero
	// means never (a publisher stays until its client leaves).
	giveUp time.Duration

	mu    sync.Mutex
	place placement
	ended bool // the node said the stream is gone

	cur        atomic.Pointer[attached] // nil while detached
	reattaches atomic.Uint64
}

// attached is a link's live connection to its node.
type attached struct {
	conn *quic.Conn
	ctrl *quic.Stream
	path *medialink.Path
}

// errStreamGone ends a downlink whose publisher left.
var errStreamGone = errors.New("the stream ended at its node")

// Backoff between re-attach attempts: short at first, since a replaced node is
// usually ready within tens of milliseconds.
const (
	reattachMin = 20 * time.Millisecond
	reattachMax = 500 * time.Millisecond
)

func (l *nodeLink) placement() placement {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.place
}

// run keeps the link attached until ctx ends, the stream is gone, or giveUp
// passes without a successful attach. It returns why it stopped.
func (l *nodeLink) run(ctx context.Context) error {
	l.core.links.add(l)
	defer l.core.links.remove(l)
	connectedAt := time.Now()
	backoff := reattachMin
	for {
		connected, err := l.attach(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if l.isEnded() {
			return errStreamGone
		}
		if connected {
			connectedAt = time.Now()
			backoff = reattachMin
			l.reattaches.Add(1)
			l.core.m.reattaches.Inc()
			l.core.log.Warn("gateway: media link lost, re-attaching", "stream", l.stream, "role", l.role, "node", l.placement().Node, "err", err)
		}
		if l.giveUp > 0 && time.Since(connectedAt) > l.giveUp {
			l.core.log.Warn("gateway: stream did not come back", "stream", l.stream, "role", l.role, "after", l.giveUp)
			return fmt.Errorf("not re-attached within %s: %w", l.giveUp, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		old := l.placement()
		pl, err := l.relocate(rctx, old)
		cancel()
		if err != nil {
			l.core.log.Debug("gateway: stream not found again yet", "stream", l.stream, "role", l.role, "err", err)
			backoff = min(2*backoff, reattachMax)
			continue
		}
		l.mu.Lock()
		l.place = pl
		l.mu.Unlock()
		if l.role == medialink.RolePublish && (old.Agent != pl.Agent || old.Node != pl.Node) {
			// The uplink alone tells: a gateway's downlinks of the stream follow it.
			l.core.emit(webhook.Event{Type: webhook.StreamMoved, Stream: l.stream, Agent: pl.Agent, Node: pl.Node,
				FromAgent: old.Agent, FromNode: old.Node})
		}
		if old.Session != pl.Session {
			go l.core.closeAgentSession(old)
		}
	}
}

// attach dials the node, serves the link until it drops and reports whether it
// was ever up.
func (l *nodeLink) attach(ctx context.Context) (bool, error) {
	pl := l.placement()
	var recv func([]byte)
	if l.role == medialink.RoleSubscribe {
		recv = l.onPacket
	}
	a, err := l.core.dialNode(ctx, pl.Media, l.stream, l.role, recv)
	if err != nil {
		return false, err
	}
	defer a.path.Close()
	l.core.watchAgent(pl.API)
	go l.readControl(a.ctrl)
	l.cur.Store(a)
	l.onAttach()
	err = medialink.ReadPackets(ctx, a.conn, l.onPacket)
	l.cur.CompareAndSwap(a, nil)
	return true, err
}

// readControl follows the node's control messages until the link closes.
func (l *nodeLink) readControl(ctrl *quic.Stream) {
	for {
		m, err := medialink.ReadMsg(ctrl)
		if err != nil {
			return
		}
		switch m.T {
		case medialink.MsgTracks:
			if l.onTracks != nil {
				l.onTracks(m.Tracks, m.Expect)
			}
		case medialink.MsgGone:
			l.mu.Lock()
			l.ended = true
			l.mu.Unlock()
		}
	}
}

func (l *nodeLink) isEnded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}

// sendRTP sends one framed RTP packet to the node: on the media path, or on the
// connection when it is too large for the path. It drops the packet while the
// link is detached (the node asks for a keyframe after a re-attach).
func (l *nodeLink) sendRTP(pkt []byte) {
	if a := l.cur.Load(); a != nil {
		_ = a.path.SendRTP(a.conn, pkt)
	}
}

// sendFeedback sends a framed feedback packet (PLI, NACK) to the node as a
// datagram and reports whether the link was up.
func (l *nodeLink) sendFeedback(pkt []byte) bool {
	a := l.cur.Load()
	if a == nil {
		return false
	}
	_ = a.conn.SendDatagram(pkt)
	return true
}

// writeControl sends a control message to the node when the link is up.
func (l *nodeLink) writeControl(m *medialink.Msg) {
	if a := l.cur.Load(); a != nil {
		_ = medialink.WriteMsg(a.ctrl, m)
	}
}

// drop closes the live connection with code and reason (the link re-attaches
// unless its context has ended).
func (l *nodeLink) drop(code quic.ApplicationErrorCode, reason string) {
	if a := l.cur.Load(); a != nil {
		_ = a.conn.CloseWithError(code, reason)
	}
}

// Media link close codes.
const (
	closeEnded    quic.ApplicationErrorCode = 0 // the stream ended: the node ends it for its viewers
	closeNodeDown quic.ApplicationErrorCode = 3 // the agent saw the node die
)

// dialNode opens a media link to a node, exchanges hellos and connects the link's
// media path; recv receives the RTP that arrives on the path (nil: none
// expected). The caller closes the path when the link is done.
func (c *Core) dialNode(ctx context.Context, media, stream, role string, recv func([]byte)) (*attached, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := c.media.Dial(dctx, media, c.id.ClientTLS())
	if err != nil {
		return nil, err
	}
	path := c.media.NewPath(recv)
	fail := func(err error) (*attached, error) {
		path.Close()
		_ = conn.CloseWithError(1, "")
		return nil, err
	}
	ctrl, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return fail(err)
	}
	hello := &medialink.Msg{T: medialink.MsgHello, Stream: stream, Role: role, Gateway: c.cfg.ID, Path: path.ID(), Port: c.media.MediaPort()}
	if err := medialink.WriteMsg(ctrl, hello); err != nil {
		return fail(err)
	}
	_ = ctrl.SetReadDeadline(time.Now().Add(3 * time.Second))
	reply, err := medialink.ReadMsg(ctrl)
	if err == nil && reply.T != medialink.MsgOK {
		err = fmt.Errorf("node refused the %s link: %s", role, reply.Error)
	}
	if err == nil {
		err = path.Connect(conn, reply.Path, reply.Port, true)
	}
	if err != nil {
		return fail(err)
	}
	_ = ctrl.SetReadDeadline(time.Time{})
	return &attached{conn: conn, ctrl: ctrl, path: path}, nil
}

// linkSet is every node link of the gateway, for the agent event follower.
type linkSet struct {
	mu sync.Mutex
	m  map[*nodeLink]struct{}
}

func (s *linkSet) add(l *nodeLink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*nodeLink]struct{}{}
	}
	s.m[l] = struct{}{}
}

func (s *linkSet) remove(l *nodeLink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, l)
}

// each calls fn for every link whose placement satisfies on.
func (s *linkSet) each(on func(placement) bool, fn func(*nodeLink)) {
	s.mu.Lock()
	var hit []*nodeLink
	for l := range s.m {
		if on(l.placement()) {
			hit = append(hit, l)
		}
	}
	s.mu.Unlock()
	for _, l := range hit {
		fn(l)
	}
}

// any reports whether a link's placement satisfies on.
func (s *linkSet) any(on func(placement) bool) bool {
	found := false
	s.each(on, func(*nodeLink) { found = true })
	return found
}
