package push

import (
	"errors"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// Draft 17+ carry each request on a bidirectional stream of its own; these
// are the session's readers for that layout.

// firstMessageTimeout bounds how long a request stream the server opened may
// stay silent before its first message.
const firstMessageTimeout = 10 * time.Second

// acceptRequests serves each request stream the server opens.
func (s *Session) acceptRequests() {
	defer s.wg.Done()
	for {
		str, err := s.conn.AcceptStream(s.conn.Context())
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.serveRequest(str)
	}
}

// serveRequest answers one server request: a SUBSCRIBE lives as long as its
// stream; anything else is refused as not supported.
func (s *Session) serveRequest(str *quic.Stream) {
	defer s.wg.Done()
	_ = str.SetReadDeadline(time.Now().Add(firstMessageTimeout))
	m, err := moqt.ReadMessage(str, s.v, controlLimit)
	_ = str.SetReadDeadline(time.Time{})
	var unknown *moqt.UnknownMessageError
	switch {
	case errors.As(err, &unknown):
		s.refuse(str, moqt.ReqNotSupported, "request not supported by this publisher")
		return
	case err != nil:
		// A malformed request is the server's protocol error; a stream that
		// was reset or stayed silent ends only itself.
		var pe *moqt.ProtocolError
		if s.gone() == nil && errors.As(err, &pe) {
			s.abort(pe.Code, err)
			return
		}
		str.CancelRead(0)
		str.CancelWrite(0)
		return
	}
	sm, ok := m.(*moqt.Subscribe)
	if !ok {
		s.refuse(str, moqt.ReqNotSupported, "request not supported by this publisher")
		return
	}
	if sm.RequestID%2 != 1 {
		s.abort(moqt.CodeInvalidRequestID, errors.New("server request with an even (client) request id"))
		return
	}
	sub := s.subscribe(sm, str)
	if sub == nil {
		return
	}
	// The subscriber ends the subscription by closing or resetting the
	// stream; nothing else is expected on it.
	for {
		if _, err := moqt.ReadMessage(str, s.v, controlLimit); err != nil {
			break
		}
	}
	sub.end(moqt.DoneSubscriptionEnded, "unsubscribed", true)
}

// refuse answers a request stream with REQUEST_ERROR and closes it.
func (s *Session) refuse(str *quic.Stream, code moqt.ErrorCode, reason string) {
	_, _ = str.Write((&moqt.RequestError{Code: code, Reason: reason}).Append(nil, s.v))
	_ = str.Close()
	str.CancelRead(0)
}

// peerControlLoop reads the server's control stream after SETUP: only
// GOAWAY may follow.
func (s *Session) peerControlLoop() {
	defer s.wg.Done()
	for {
		m, err := moqt.ReadMessage(s.peerUni, s.v, controlLimit)
		if err != nil {
			return
		}
		if g, ok := m.(*moqt.GoAway); ok {
			s.log.Info("server asks to move", "uri", g.NewSessionURI)
			continue
		}
		s.abort(moqt.CodeProtocolViolation, errors.New("control stream carries more than SETUP and GOAWAY"))
		return
	}
}

// refuseUniStreams stops any unidirectional stream the server opens after
// SETUP: a publisher subscribes to nothing, so none carry data it wants.
func (s *Session) refuseUniStreams() {
	defer s.wg.Done()
	for {
		str, err := s.conn.AcceptUniStream(s.conn.Context())
		if err != nil {
			return
		}
		str.CancelRead(0)
	}
}
