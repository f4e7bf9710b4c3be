package moq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// implementation is our MOQT_IMPLEMENTATION setup parameter.
const implementation = "sluice"

// moqSession is one MoQT session: its control stream(s), its requests in both
// directions, its broadcasts and its data streams. Every goroutine it starts
// is in wg and ends with ctx, which ends with the session.
type moqSession struct {
	srv    *Server
	conn   transport.Conn
	v      moqt.Version
	log    *slog.Logger
	client string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	ctrlMu  sync.Mutex
	ctrl    transport.Stream     // draft 16: the client's bidirectional control stream
	ctrlOut transport.SendStream // draft 17+: our unidirectional control stream

	setupToken []byte     // AUTHORIZATION_TOKEN of the client's SETUP
	urlToken   []byte     // the "jwt" query parameter of the session's URL
	openMu     sync.Mutex // PUBLISH: one broadcast per namespace
	watchMu    sync.Mutex // SUBSCRIBE: one watch per stream

	mu       sync.Mutex
	nextOurs uint64              // our next request id (odd)
	peerMax  uint64              // draft 16: our request ids stay below it
	granted  uint64              // draft 16: the client's request ids stay below it
	peerOpen int                 // the client's open requests
	reqs     map[uint64]*request // every open request, by id
	tracks   map[uint64]*track   // received tracks by alias
	bcasts   map[string]*broadcast
	watches  map[string]*watch // streams this session views
	dataOpen int
}

func newSession(srv *Server, conn transport.Conn, v moqt.Version) *moqSession {
	s := &moqSession{srv: srv, conn: conn, v: v, client: clientHost(conn.RemoteAddr()), nextOurs: 1,
		granted: 2 * uint64(srv.cfg.MaxRequests),
		reqs:    map[uint64]*request{}, tracks: map[uint64]*track{}, bcasts: map[string]*broadcast{}, watches: map[string]*watch{}}
	s.log = srv.log.With("client", s.client, "version", v.String(), "webtransport", conn.WebTransport())
	s.ctx, s.cancel = context.WithCancel(conn.Context())
	if t := conn.Query().Get("jwt"); t != "" {
		s.urlToken = []byte(t)
	}
	return s
}

// closeError ends the session with a termination code.
type closeError struct {
	code moqt.ErrorCode
	msg  string
}

func (e *closeError) Error() string { return fmt.Sprintf("moq: %s (code 0x%x)", e.msg, uint64(e.code)) }

func closeWith(code moqt.ErrorCode, format string, args ...any) error {
	return &closeError{code: code, msg: fmt.Sprintf(format, args...)}
}

// run serves the session until it ends, then ends its broadcasts and waits
// for its goroutines.
func (s *moqSession) run() {
	s.srv.m.sessions.Inc()
	s.srv.m.sessionsAll.Inc()
	defer s.srv.m.sessions.Dec()
	s.log.Info("moq: session", "transport", map[bool]string{false: "quic", true: "webtransport"}[s.conn.WebTransport()])
	err := s.setup()
	if err == nil {
		err = s.serve()
	}
	s.fail(err)
	s.wg.Wait()
	s.mu.Lock()
	bs := make([]*broadcast, 0, len(s.bcasts))
	for _, b := range s.bcasts {
		bs = append(bs, b)
	}
	s.mu.Unlock()
	for _, b := range bs {
		b.end("session ended", nil)
	}
}

// fail ends the session for err: the code a *closeError or *moqt.ProtocolError
// carries, INTERNAL_ERROR for anything else, nothing to count when the peer
// (or Close) ended it first.
func (s *moqSession) fail(err error) {
	if s.conn.Context().Err() != nil || s.ctx.Err() != nil {
		s.terminate(moqt.CodeNoError, "")
		return
	}
	var ce *closeError
	var pe *moqt.ProtocolError
	switch {
	case err == nil || errors.Is(err, io.EOF):
		s.terminate(moqt.CodeNoError, "")
	case errors.As(err, &ce):
		s.terminate(ce.code, ce.msg)
	case errors.As(err, &pe):
		s.terminate(pe.Code, pe.Msg)
	default:
		s.terminate(moqt.CodeInternalError, err.Error())
	}
}

// terminate closes the transport with code, once.
func (s *moqSession) terminate(code moqt.ErrorCode, reason string) {
	s.once.Do(func() {
		if code != moqt.CodeNoError {
			s.srv.m.sessionError(code)
			s.log.Info("moq: session closed", "code", fmt.Sprintf("0x%x", uint64(code)), "reason", reason)
		}
		s.cancel()
		_ = s.conn.CloseWithError(uint64(code), reason)
	})
}

// goOwned runs f on a goroutine of the session.
func (s *moqSession) goOwned(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// setup exchanges SETUP messages as the negotiated draft lays them out.
func (s *moqSession) setup() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.SetupTimeout)
	defer cancel()
	deadline := time.Now().Add(s.srv.cfg.SetupTimeout)
	timeout := func(err error) error {
		if ctx.Err() != nil && s.conn.Context().Err() == nil {
			return closeWith(moqt.CodeControlMessageTimeout, "no SETUP within %s", s.srv.cfg.SetupTimeout)
		}
		return err
	}
	if s.v == moqt.Draft16 {
		st, err := s.conn.AcceptStream(ctx)
		if err != nil {
			return timeout(err)
		}
		s.ctrl = st
		_ = st.SetReadDeadline(deadline)
		m, err := readMessage(st, s.v)
		if err != nil {
			return timeout(err)
		}
		cs, ok := m.(*moqt.ClientSetup)
		if !ok {
			return closeWith(moqt.CodeProtocolViolation, "first control message is 0x%x, not CLIENT_SETUP", m.Type())
		}
		if err := s.setupParams(cs.Params); err != nil {
			return err
		}
		_ = st.SetReadDeadline(time.Time{})
		return s.writeControl(&moqt.ServerSetup{Params: moqt.Params{
			{Type: moqt.SetupMaxRequestID, Value: s.granted},
			{Type: moqt.SetupImplementation, Bytes: []byte(implementation)},
		}})
	}
	// Draft 17+: the client takes its first incoming unidirectional stream as
	// our control stream, so ours is opened and written before anything else.
	out, err := s.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return timeout(err)
	}
	s.ctrlOut = out
	if err := s.writeControl(&moqt.Setup{Params: moqt.Params{{Type: moqt.SetupImplementation, Bytes: []byte(implementation)}}}); err != nil {
		return err
	}
	in, err := s.conn.AcceptUniStream(ctx)
	if err != nil {
		return timeout(err)
	}
	_ = in.SetReadDeadline(deadline)
	m, err := readMessage(in, s.v)
	if err != nil {
		return timeout(err)
	}
	st, ok := m.(*moqt.Setup)
	if !ok {
		return closeWith(moqt.CodeProtocolViolation, "first unidirectional stream is not SETUP")
	}
	_ = in.SetReadDeadline(time.Time{})
	if err := s.setupParams(st.Params); err != nil {
		return err
	}
	s.goOwned(func() { s.fail(s.readPeerControl(in)) })
	return nil
}

// setupParams applies the client's setup parameters.
func (s *moqSession) setupParams(ps moqt.Params) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		switch p.Type {
		case moqt.SetupMaxRequestID:
			if s.v == moqt.Draft16 {
				s.peerMax = p.Value
			}
		case moqt.SetupPath:
			if s.conn.WebTransport() {
				return closeWith(moqt.CodeInvalidPath, "PATH over WebTransport")
			}
			s.urlToken = queryToken(string(p.Bytes))
		case moqt.SetupAuthority:
			if s.conn.WebTransport() {
				return closeWith(moqt.CodeInvalidAuthority, "AUTHORITY over WebTransport")
			}
		case moqt.SetupAuthToken:
			s.setupToken = p.Bytes
		}
	}
	return nil
}

// queryToken is the "jwt" query parameter of a path ("/?jwt=…"), as
// moq-dev's clients send a token, or nil.
func queryToken(path string) []byte {
	_, q, ok := strings.Cut(path, "?")
	if !ok {
		return nil
	}
	vs, err := url.ParseQuery(q)
	if err != nil || vs.Get("jwt") == "" {
		return nil
	}
	return []byte(vs.Get("jwt"))
}

// readPeerControl reads the client's draft 17+ control stream, which carries
// only GOAWAY after SETUP; closing it is a protocol violation.
func (s *moqSession) readPeerControl(in transport.ReceiveStream) error {
	for {
		m, err := readMessage(in, s.v)
		if errors.Is(err, io.EOF) {
			return closeWith(moqt.CodeProtocolViolation, "the client closed its control stream")
		}
		if err != nil {
			return err
		}
		if _, ok := m.(*moqt.GoAway); !ok {
			return closeWith(moqt.CodeProtocolViolation, "control message 0x%x on the control stream", m.Type())
		}
	}
}

// serve runs the session after SETUP: data streams, request streams and (draft
// 16) the control stream, until one of them fails or the session ends.
func (s *moqSession) serve() error {
	s.goOwned(s.acceptData)
	s.goOwned(s.acceptRequests)
	if s.v == moqt.Draft16 {
		return s.readControl16()
	}
	<-s.ctx.Done()
	return nil
}

// writeControl writes m on the session's own control stream (draft 16: the
// shared bidirectional one) within WriteTimeout; a client that stops reading
// loses the session.
func (s *moqSession) writeControl(m moqt.Message) error {
	var w transport.SendStream = s.ctrlOut
	if s.v == moqt.Draft16 {
		w = s.ctrl
	}
	return s.write(&s.ctrlMu, w, m)
}

func (s *moqSession) write(mu *sync.Mutex, w transport.SendStream, m moqt.Message) error {
	mu.Lock()
	defer mu.Unlock()
	_ = w.SetWriteDeadline(time.Now().Add(s.srv.cfg.WriteTimeout))
	_, err := w.Write(m.Append(nil, s.v))
	if err != nil {
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			err = closeWith(moqt.CodeControlMessageTimeout, "the client did not read a control message within %s", s.srv.cfg.WriteTimeout)
			s.fail(err)
		}
		return fmt.Errorf("moq: write 0x%x: %w", m.Type(), err)
	}
	return nil
}

// readControl16 reads the draft 16 control stream: new requests from the
// client, and the responses and follow-ups of open requests by request id.
func (s *moqSession) readControl16() error {
	for {
		m, err := readMessage(s.ctrl, s.v)
		if errors.Is(err, io.EOF) {
			return closeWith(moqt.CodeProtocolViolation, "the client closed the control stream")
		}
		if err != nil {
			return err
		}
		if err := s.dispatch16(m); err != nil {
			return err
		}
	}
}

func (s *moqSession) dispatch16(m message) error {
	switch m := m.(type) {
	case *moqt.PublishNamespace, *moqt.Publish, *moqt.Subscribe, *unhandled:
		r, err := s.peerRequest(m, nil)
		if err != nil || r == nil {
			return err
		}
		s.goOwned(func() { s.serveRequest(r, m) })
	case *moqt.SubscribeOK:
		s.route(m.RequestID, m)
	case *moqt.RequestError:
		s.route(m.RequestID, m)
	case *moqt.PublishDone:
		s.route(m.RequestID, m)
	case *moqt.PublishNamespaceDone:
		s.route(m.RequestID, m)
	case *moqt.RequestOK:
		s.route(m.RequestID, m)
	case *moqt.PublishOK:
		s.route(m.RequestID, m)
	case *moqt.Unsubscribe:
		s.route(m.RequestID, m)
	case *moqt.PublishNamespaceCancel:
		s.route(m.RequestID, m)
	case *moqt.MaxRequestID:
		s.mu.Lock()
		defer s.mu.Unlock()
		if m.RequestID < s.peerMax {
			return closeWith(moqt.CodeProtocolViolation, "MAX_REQUEST_ID %d below %d", m.RequestID, s.peerMax)
		}
		s.peerMax = m.RequestID
	case *moqt.RequestsBlocked, *moqt.GoAway:
		// Nothing to do: the window grows as requests end; a client does not move us.
	default:
		return closeWith(moqt.CodeProtocolViolation, "control message 0x%x after SETUP", m.Type())
	}
	return nil
}

// route hands a message to the open request it names; one for a request that
// has ended meanwhile is dropped.
func (s *moqSession) route(id uint64, m message) {
	s.mu.Lock()
	r := s.reqs[id]
	s.mu.Unlock()
	if r != nil {
		r.deliver(m)
	}
}

// acceptRequests serves the bidirectional streams the client opens for its
// requests (every request in draft 17+; SUBSCRIBE_NAMESPACE in draft 16).
func (s *moqSession) acceptRequests() {
	for {
		st, err := s.conn.AcceptStream(s.ctx)
		if err != nil {
			return
		}
		s.goOwned(func() {
			if err := s.serveRequestStream(st); err != nil {
				s.fail(err)
			}
		})
	}
}

// serveRequestStream reads a request stream's first message within
// SetupTimeout, serves the request, then follows the stream until it ends.
func (s *moqSession) serveRequestStream(st transport.Stream) error {
	_ = st.SetReadDeadline(time.Now().Add(s.srv.cfg.SetupTimeout))
	m, err := readMessage(st, s.v)
	if err != nil {
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() || errors.Is(err, io.EOF) {
			st.CancelRead(uint64(moqt.ResetCancelled))
			st.CancelWrite(uint64(moqt.ResetCancelled))
			return nil
		}
		return err
	}
	_ = st.SetReadDeadline(time.Time{})
	switch m.(type) {
	case *moqt.PublishNamespace, *moqt.Publish, *moqt.Subscribe, *unhandled:
	default:
		return closeWith(moqt.CodeProtocolViolation, "message 0x%x opens a request stream", m.Type())
	}
	r, err := s.peerRequest(m, st)
	if err != nil || r == nil {
		return err
	}
	s.serveRequest(r, m)
	return r.follow()
}

// clientHost is a client's address as policies and /v1/streams show it for every
// protocol: the host, without the port (WHIP has no other).
func clientHost(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
