package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// Session is one MoQT session with a server. Its methods are safe for
// concurrent use. Every goroutine it starts ends when Close returns or the
// connection ends.
type Session struct {
	conn *quic.Conn
	v    moqt.Version
	opts Options
	log  *slog.Logger

	wg        sync.WaitGroup
	closeOnce sync.Once

	// ctrl is draft 16's control stream (nil in draft 17+, where ctrlUni is
	// our SETUP stream); ctrlMu serializes writes to it.
	ctrl    *quic.Stream
	ctrlUni *quic.SendStream
	peerUni *quic.ReceiveStream
	ctrlMu  sync.Mutex

	mu         sync.Mutex
	err        error                        // why the session ended, first cause
	nextID     uint64                       // our next request id (even)
	peerMax    uint64                       // draft 16: our ids stay below it
	peerMaxUp  chan struct{}                // closed when peerMax rises
	granted    uint64                       // draft 16: the server's ids stay below it
	peerNext   uint64                       // draft 16: the server's next id at least
	pending    map[uint64]chan moqt.Message // draft 16: PUBLISH_NAMESPACE answers
	broadcasts map[string]*Broadcast        // by namespace path
	subs       map[uint64]*subscription     // draft 16: by request id
}

func newSession(conn *quic.Conn, v moqt.Version, o Options) *Session {
	return &Session{
		conn: conn, v: v, opts: o,
		log:        o.Logger.With("moqt", v.String()),
		peerMaxUp:  make(chan struct{}),
		granted:    requestIDWindow,
		peerNext:   1,
		pending:    map[uint64]chan moqt.Message{},
		broadcasts: map[string]*Broadcast{},
		subs:       map[uint64]*subscription{},
	}
}

// Version is the MoQT draft the server chose.
func (s *Session) Version() moqt.Version { return s.v }

// setup runs the SETUP exchange of s.v within ctx.
func (s *Session) setup(ctx context.Context, params moqt.Params) error {
	deadline, _ := ctx.Deadline()
	if s.v == moqt.Draft16 {
		ctrl, err := s.conn.OpenStreamSync(ctx)
		if err != nil {
			return fmt.Errorf("open control stream: %w", err)
		}
		s.ctrl = ctrl
		params = append(params, moqt.Param{Type: moqt.SetupMaxRequestID, Value: s.granted})
		if err := s.writeCtrl(&moqt.ClientSetup{Params: params}); err != nil {
			return err
		}
		_ = ctrl.SetReadDeadline(deadline)
		m, err := moqt.ReadMessage(ctrl, s.v, controlLimit)
		_ = ctrl.SetReadDeadline(time.Time{})
		if err != nil {
			return fmt.Errorf("read SERVER_SETUP: %w", err)
		}
		ss, ok := m.(*moqt.ServerSetup)
		if !ok {
			return &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("first control message is %T, not SERVER_SETUP", m)}
		}
		if p, ok := ss.Params.Get(moqt.SetupMaxRequestID); ok {
			s.peerMax = p.Value
		}
		return nil
	}
	// Draft 17+: each side's SETUP opens its own unidirectional stream, and
	// the server's must be the first it opens.
	uni, err := s.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open control stream: %w", err)
	}
	s.ctrlUni = uni
	if _, err := uni.Write((&moqt.Setup{Params: params}).Append(nil, s.v)); err != nil {
		return fmt.Errorf("write SETUP: %w", err)
	}
	peer, err := s.conn.AcceptUniStream(ctx)
	if err != nil {
		return fmt.Errorf("wait for the server's SETUP: %w", err)
	}
	s.peerUni = peer
	_ = peer.SetReadDeadline(deadline)
	m, err := moqt.ReadMessage(peer, s.v, controlLimit)
	_ = peer.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("read SETUP: %w", err)
	}
	if _, ok := m.(*moqt.Setup); !ok {
		return &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("server's control stream starts with %T, not SETUP", m)}
	}
	return nil
}

// start runs the session's readers once SETUP is done.
func (s *Session) start() {
	s.wg.Add(1)
	go s.watch()
	if s.v == moqt.Draft16 {
		s.wg.Add(1)
		go s.controlLoop()
		return
	}
	s.wg.Add(3)
	go s.acceptRequests()
	go s.peerControlLoop()
	go s.refuseUniStreams()
}

// watch ends every subscription once the connection is gone.
func (s *Session) watch() {
	defer s.wg.Done()
	<-s.conn.Context().Done()
	s.fail(context.Cause(s.conn.Context()))
	s.mu.Lock()
	bs := make([]*Broadcast, 0, len(s.broadcasts))
	for _, b := range s.broadcasts {
		bs = append(bs, b)
	}
	s.mu.Unlock()
	for _, b := range bs {
		b.sessionGone()
	}
}

// fail records why the session ended, translating QUIC's errors to MoQT's.
func (s *Session) fail(err error) {
	if err == nil {
		return
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		err = &SessionError{Code: moqt.ErrorCode(ae.ErrorCode), Reason: ae.ErrorMessage, Remote: ae.Remote}
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// abort closes the session with a termination code because of err.
func (s *Session) abort(code moqt.ErrorCode, err error) {
	s.fail(&SessionError{Code: code, Reason: err.Error()})
	reason := err.Error()
	if len(reason) > 512 {
		reason = reason[:512]
	}
	_ = s.conn.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

// errOr is the session's recorded error if it ended at the server's hand
// (which says more than a failed read), else err.
func (s *Session) errOr(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var se *SessionError
	if errors.As(s.err, &se) && se.Remote {
		return s.err
	}
	return err
}

// gone returns the session's error once the connection has ended.
func (s *Session) gone() error {
	select {
	case <-s.conn.Context().Done():
	default:
		return nil
	}
	s.fail(context.Cause(s.conn.Context()))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// ended reports whether the session is over or being closed.
func (s *Session) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil || s.conn.Context().Err() != nil
}

func (s *Session) writeCtrl(m moqt.Message) error {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	if _, err := s.ctrl.Write(m.Append(nil, s.v)); err != nil {
		return fmt.Errorf("push: write control message 0x%x: %w", m.Type(), err)
	}
	return nil
}

// Close withdraws every broadcast (their queued frames are sent first, for up
// to Options.CloseTimeout), gives the last packets time to be acknowledged,
// and closes the connection with NO_ERROR. It returns the session's error if
// the server had already ended it; it is safe to call more than once.
func (s *Session) Close() error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		s.mu.Lock()
		bs := make([]*Broadcast, 0, len(s.broadcasts))
		for _, b := range s.broadcasts {
			bs = append(bs, b)
		}
		s.mu.Unlock()
		for _, b := range bs {
			_ = b.Close()
		}
		s.linger()
		err = s.gone()
		s.fail(ErrClosed)
		_ = s.conn.CloseWithError(quic.ApplicationErrorCode(moqt.CodeNoError), "")
		s.wg.Wait()
	})
	var se *SessionError
	if errors.Is(err, ErrClosed) || errors.As(err, &se) && se.Code == moqt.CodeNoError {
		return nil
	}
	return err
}

// linger waits until what was written has probably been acknowledged (QUIC
// drops unacknowledged stream data when the connection closes): a few
// round trips, or until the server closes, at most CloseTimeout.
func (s *Session) linger() {
	st := s.conn.ConnectionStats()
	d := min(3*st.SmoothedRTT+4*st.MeanDeviation+25*time.Millisecond, s.opts.CloseTimeout)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.conn.Context().Done():
	}
}

// controlLoop reads draft 16's control stream until the session ends.
func (s *Session) controlLoop() {
	defer s.wg.Done()
	for {
		m, err := moqt.ReadMessage(s.ctrl, s.v, controlLimit)
		if err != nil {
			if s.ended() {
				return
			}
			if errors.Is(err, io.EOF) {
				err = &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: "server closed the control stream"}
			}
			s.abort(moqt.CodeOf(err), err)
			return
		}
		if err := s.handle16(m); err != nil {
			s.abort(moqt.CodeOf(err), err)
			return
		}
	}
}

func (s *Session) handle16(m moqt.Message) error {
	switch m := m.(type) {
	case *moqt.RequestOK:
		return s.answer(m.RequestID, m)
	case *moqt.RequestError:
		return s.answer(m.RequestID, m)
	case *moqt.Subscribe:
		if err := s.checkPeerID(m.RequestID); err != nil {
			return err
		}
		s.subscribe(m, nil)
	case *moqt.Unsubscribe:
		s.mu.Lock()
		sub := s.subs[m.RequestID]
		s.mu.Unlock()
		if sub != nil {
			sub.end(moqt.DoneSubscriptionEnded, "unsubscribed", true)
		}
	case *moqt.MaxRequestID:
		s.mu.Lock()
		if m.RequestID > s.peerMax {
			s.peerMax = m.RequestID
			close(s.peerMaxUp)
			s.peerMaxUp = make(chan struct{})
		}
		s.mu.Unlock()
	case *moqt.PublishNamespaceCancel:
		s.mu.Lock()
		var hit *Broadcast
		for _, b := range s.broadcasts {
			if b.reqID == m.RequestID {
				hit = b
			}
		}
		s.mu.Unlock()
		if hit != nil {
			hit.cancelled(&RequestError{Request: hit.what(), Code: m.Code, Reason: m.Reason})
		}
	case *moqt.GoAway:
		s.log.Info("server asks to move", "uri", m.NewSessionURI)
	case *moqt.RequestsBlocked:
	default:
		return &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("unexpected %T from the server", m)}
	}
	return nil
}

// answer hands a draft 16 response to the request waiting for it.
func (s *Session) answer(id uint64, m moqt.Message) error {
	s.mu.Lock()
	ch := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ch == nil {
		return &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("answer to request %d, which is not pending", id)}
	}
	ch <- m
	return nil
}

// checkPeerID enforces draft 16's request ids: the server's are odd,
// increasing and below what we granted; it grants more as they are used.
func (s *Session) checkPeerID(id uint64) error {
	s.mu.Lock()
	if id%2 != 1 || id < s.peerNext || id >= s.granted {
		s.mu.Unlock()
		return &moqt.ProtocolError{Code: moqt.CodeInvalidRequestID, Msg: fmt.Sprintf("request id %d (want odd, at least %d, below %d)", id, s.peerNext, s.granted)}
	}
	s.peerNext = id + 2
	grant := uint64(0)
	if s.granted-id < requestIDWindow/2 {
		s.granted += requestIDWindow
		grant = s.granted
	}
	s.mu.Unlock()
	if grant != 0 {
		return s.writeCtrl(&moqt.MaxRequestID{RequestID: grant})
	}
	return nil
}

// allocID takes our next request id, waiting in draft 16 until the server's
// MAX_REQUEST_ID allows it.
func (s *Session) allocID(ctx context.Context) (uint64, error) {
	blocked := false
	for {
		s.mu.Lock()
		if s.v != moqt.Draft16 || s.nextID < s.peerMax {
			id := s.nextID
			s.nextID += 2
			s.mu.Unlock()
			return id, nil
		}
		up, limit := s.peerMaxUp, s.peerMax
		s.mu.Unlock()
		if !blocked {
			blocked = true
			if err := s.writeCtrl(&moqt.RequestsBlocked{MaxRequestID: limit}); err != nil {
				return 0, err
			}
		}
		select {
		case <-up:
		case <-ctx.Done():
			return 0, fmt.Errorf("push: waiting for the server to allow a request (MAX_REQUEST_ID %d): %w", limit, ctx.Err())
		case <-s.conn.Context().Done():
			return 0, s.gone()
		}
	}
}
