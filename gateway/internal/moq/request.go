package moq

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/sluicegw/sluice/gateway/internal/moq/transport"
	"github.com/sluicegw/sluice/sdk/moqt"
)

// message is a control message read from a client: a decoded moqt.Message,
// or an *unhandled one.
type message interface{ Type() uint64 }

// unhandled is a request this endpoint answers without decoding it: sdk/moqt
// does not lay it out (SUBSCRIBE_NAMESPACE, FETCH, TRACK_STATUS). Only its
// request id, the payload's first field, is read.
type unhandled struct {
	typ uint64
	id  uint64
}

func (u *unhandled) Type() uint64 { return u.typ }

// subscribeNamespace reports whether u is SUBSCRIBE_NAMESPACE, which moq-dev's
// publishers send and need no answer to.
func (u *unhandled) subscribeNamespace(v moqt.Version) bool {
	if v == moqt.Draft19 {
		return u.typ == 0x50
	}
	return u.typ == 0x11
}

// rawTypes are the request types read as *unhandled in v: SUBSCRIBE_NAMESPACE,
// FETCH (0x16) and TRACK_STATUS (0xD).
func rawType(t uint64, v moqt.Version) bool {
	switch t {
	case 0x16, 0xD:
		return true
	case 0x50:
		return v == moqt.Draft19
	case 0x11:
		return v != moqt.Draft19
	}
	return false
}

// maxControl bounds a control message we read; ours are small, and
// catalogs travel as objects.
const maxControl = 16 << 10

// readMessage reads one framed control message. Messages sdk/moqt decodes go
// through moqt.ReadMessage; the request types in rawType come back as
// *unhandled with their request id.
func readMessage(r io.Reader, v moqt.Version) (message, error) {
	t, err := moqt.ReadVarint(r, v)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("moq: read message type: %w", err)
	}
	if !rawType(t, v) {
		m, err := moqt.ReadMessage(io.MultiReader(bytes.NewReader(moqt.AppendVarint(nil, v, t)), r), v, maxControl)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the type was there
		}
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("moq: read length of message 0x%x: %w", t, err)
	}
	n := int(hdr[0])<<8 | int(hdr[1])
	if n > maxControl {
		return nil, &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("message 0x%x of %d bytes", t, n)}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("moq: read message 0x%x: %w", t, err)
	}
	id, _, err := moqt.ParseVarint(payload, v)
	if err != nil {
		return nil, &moqt.ProtocolError{Code: moqt.CodeProtocolViolation, Msg: fmt.Sprintf("message 0x%x without a request id", t)}
	}
	return &unhandled{typ: t, id: id}, nil
}

// request is one open MoQT request of a session, in either direction. In
// draft 16 it lives on the control stream, told apart by id; in draft 17+ (and
// for draft 16's SUBSCRIBE_NAMESPACE) on a bidirectional stream of its own.
type request struct {
	s      *moqSession
	id     uint64
	ours   bool
	stream transport.Stream // nil: on the draft 16 control stream
	wmu    sync.Mutex

	mu     sync.Mutex
	onMsg  func(message) // a response or follow-up arrived
	onEnd  func()        // the peer ended the request
	closed bool          // released from the session
}

// handle sets what the request does with later messages and with its end.
func (r *request) handle(onMsg func(message), onEnd func()) {
	r.mu.Lock()
	r.onMsg, r.onEnd = onMsg, onEnd
	r.mu.Unlock()
}

func (r *request) deliver(m message) {
	r.mu.Lock()
	f := r.onMsg
	r.mu.Unlock()
	if f != nil {
		f(m)
	}
}

// send writes a message of the request where its draft puts it.
func (r *request) send(m moqt.Message) error {
	if r.stream == nil {
		return r.s.writeControl(m)
	}
	return r.s.write(&r.wmu, r.stream, m)
}

// follow reads a request stream's later messages until the peer ends it, and
// then runs the request's end.
func (r *request) follow() error {
	for {
		m, err := readMessage(r.stream, r.s.v)
		if err != nil {
			r.peerEnded()
			var pe *moqt.ProtocolError
			if errors.As(err, &pe) {
				return err
			}
			return nil
		}
		r.deliver(m)
	}
}

func (r *request) peerEnded() {
	r.mu.Lock()
	f := r.onEnd
	r.mu.Unlock()
	r.release()
	if f != nil {
		f()
	}
}

// release removes the request from the session, once; a client's request in
// draft 16 frees an id, which MAX_REQUEST_ID grants again.
func (r *request) release() {
	s := r.s
	s.mu.Lock()
	r.mu.Lock()
	done := r.closed
	r.closed = true
	r.mu.Unlock()
	if done {
		s.mu.Unlock()
		return
	}
	delete(s.reqs, r.id)
	var grant uint64
	if !r.ours {
		s.peerOpen--
		if s.v == moqt.Draft16 {
			s.granted += 2
			grant = s.granted
		}
	}
	s.mu.Unlock()
	if grant > 0 && s.ctx.Err() == nil {
		_ = s.writeControl(&moqt.MaxRequestID{RequestID: grant})
	}
}

// refuse answers the request with REQUEST_ERROR and releases it.
func (r *request) refuse(code moqt.ErrorCode, reason string) {
	r.s.srv.m.requestError(code)
	r.s.log.Info("moq: request refused", "request", r.id, "code", fmt.Sprintf("0x%x", uint64(code)), "reason", reason)
	if len(reason) > moqt.MaxReasonPhrase {
		reason = reason[:moqt.MaxReasonPhrase]
	}
	_ = r.send(&moqt.RequestError{RequestID: r.id, Code: code, Reason: reason})
	if r.stream != nil {
		_ = r.stream.Close()
		r.stream.CancelRead(uint64(moqt.ResetCancelled))
	}
	r.release()
}

// unsubscribe ends a subscription from the receiving side: our SUBSCRIBE or
// the client's PUBLISH (draft 16 UNSUBSCRIBE; 17+ close our side and stop
// reading).
func (r *request) unsubscribe(code moqt.ErrorCode) {
	if code != moqt.ReqInternalError {
		r.s.srv.m.requestError(code)
	}
	if r.stream == nil {
		if r.s.ctx.Err() == nil {
			_ = r.send(&moqt.Unsubscribe{RequestID: r.id})
		}
	} else {
		_ = r.stream.Close()
		r.stream.CancelRead(uint64(code))
	}
	r.release()
}

// cancelNamespace withdraws our acceptance of a PUBLISH_NAMESPACE (draft 16
// PUBLISH_NAMESPACE_CANCEL; 17+ reset the request stream with code).
func (r *request) cancelNamespace(code moqt.ErrorCode, reason string) {
	r.s.srv.m.requestError(code)
	if r.stream == nil {
		if r.s.ctx.Err() == nil {
			_ = r.send(&moqt.PublishNamespaceCancel{RequestID: r.id, Code: code, Reason: reason})
		}
	} else {
		r.stream.CancelWrite(uint64(code))
		r.stream.CancelRead(uint64(code))
	}
	r.release()
}

// requestID is a client request's id.
func requestID(m message) uint64 {
	switch m := m.(type) {
	case *moqt.PublishNamespace:
		return m.RequestID
	case *moqt.Publish:
		return m.RequestID
	case *moqt.Subscribe:
		return m.RequestID
	case *unhandled:
		return m.id
	}
	return 0
}

// peerRequest registers a request the client opened with m, checking its id:
// even (client-initiated), not in use, in draft 16 below the MAX_REQUEST_ID
// we granted. In 17+ a client over MaxRequests open requests is refused with
// REQUEST_ERROR (nil request, nil error).
func (s *moqSession) peerRequest(m message, st transport.Stream) (*request, error) {
	id := requestID(m)
	r := &request{s: s, id: id, stream: st}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.reqs[id]; dup || id%2 == 1 {
		return nil, closeWith(moqt.CodeInvalidRequestID, "request id %d", id)
	}
	if s.v == moqt.Draft16 && id >= s.granted {
		return nil, closeWith(moqt.CodeTooManyRequests, "request id %d at or above MAX_REQUEST_ID %d", id, s.granted)
	}
	if s.v != moqt.Draft16 && s.peerOpen >= s.srv.cfg.MaxRequests {
		r.closed = true
		s.mu.Unlock()
		r.refuse(moqt.ReqExcessiveLoad, fmt.Sprintf("more than %d open requests", s.srv.cfg.MaxRequests))
		s.mu.Lock()
		return nil, nil
	}
	s.peerOpen++
	s.reqs[id] = r
	return r, nil
}

// ourRequest opens a request of ours: the next odd id (draft 16: below the
// client's MAX_REQUEST_ID, else REQUESTS_BLOCKED) and, in 17+, a stream.
func (s *moqSession) ourRequest() (*request, error) {
	s.mu.Lock()
	id := s.nextOurs
	if s.v == moqt.Draft16 && id >= s.peerMax {
		max := s.peerMax
		s.mu.Unlock()
		_ = s.writeControl(&moqt.RequestsBlocked{MaxRequestID: max})
		return nil, fmt.Errorf("moq: the client's MAX_REQUEST_ID %d blocks request %d", max, id)
	}
	s.nextOurs += 2
	r := &request{s: s, id: id, ours: true}
	s.reqs[id] = r
	s.mu.Unlock()
	if s.v != moqt.Draft16 {
		st, err := s.conn.OpenStreamSync(s.ctx)
		if err != nil {
			r.release()
			return nil, fmt.Errorf("moq: open a request stream: %w", err)
		}
		r.stream = st
	}
	return r, nil
}

// serveRequest answers a request the client opened.
func (s *moqSession) serveRequest(r *request, m message) {
	switch m := m.(type) {
	case *moqt.PublishNamespace:
		s.onPublishNamespace(r, m)
	case *moqt.Publish:
		s.onPublish(r, m)
	case *moqt.Subscribe:
		s.onSubscribe(r, m)
	case *unhandled:
		if m.subscribeNamespace(s.v) {
			// Kept open, unanswered: moq-dev's publishers send it and go on
			// without an answer; this gateway announces nothing to publishers.
			return
		}
		r.refuse(moqt.ReqNotSupported, fmt.Sprintf("request type 0x%x is not supported", m.typ))
	}
}
