package transport

import (
	"context"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/webtransport-go"
)

// Conn is a MoQ session's transport: a raw QUIC connection or a WebTransport
// session, which offer the same streams under different types.
type Conn interface {
	Context() context.Context
	RemoteAddr() net.Addr
	AcceptStream(ctx context.Context) (Stream, error)
	AcceptUniStream(ctx context.Context) (ReceiveStream, error)
	OpenStreamSync(ctx context.Context) (Stream, error)
	OpenUniStreamSync(ctx context.Context) (SendStream, error)
	// CloseWithError ends the session with a MoQT termination code.
	CloseWithError(code uint64, reason string) error
	// WebTransport reports whether the session came over HTTP/3.
	WebTransport() bool
	// Query is the query of a WebTransport session's URL (where browser
	// clients put a token); nil over raw QUIC, whose URL is in SETUP.
	Query() url.Values
}

// ReceiveStream is the reading half of a stream.
type ReceiveStream interface {
	io.Reader
	CancelRead(code uint64)
	SetReadDeadline(t time.Time) error
}

// SendStream is the writing half of a stream; Close ends it cleanly (FIN).
type SendStream interface {
	io.Writer
	io.Closer
	CancelWrite(code uint64)
	SetWriteDeadline(t time.Time) error
}

// Stream is a bidirectional stream.
type Stream interface {
	ReceiveStream
	SendStream
}

// rawConn is a MoQ session directly on a QUIC connection.
type rawConn struct{ c *quic.Conn }

func (r rawConn) Context() context.Context { return r.c.Context() }
func (r rawConn) RemoteAddr() net.Addr     { return r.c.RemoteAddr() }
func (r rawConn) WebTransport() bool       { return false }
func (r rawConn) Query() url.Values        { return nil }

func (r rawConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := r.c.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return rawStream{s}, nil
}

func (r rawConn) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	s, err := r.c.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return rawRecv{s}, nil
}

func (r rawConn) OpenStreamSync(ctx context.Context) (Stream, error) {
	s, err := r.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return rawStream{s}, nil
}

func (r rawConn) OpenUniStreamSync(ctx context.Context) (SendStream, error) {
	s, err := r.c.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return rawSend{s}, nil
}

func (r rawConn) CloseWithError(code uint64, reason string) error {
	return r.c.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

type rawStream struct{ s *quic.Stream }

func (s rawStream) Read(b []byte) (int, error)         { return s.s.Read(b) }
func (s rawStream) Write(b []byte) (int, error)        { return s.s.Write(b) }
func (s rawStream) Close() error                       { return s.s.Close() }
func (s rawStream) CancelRead(code uint64)             { s.s.CancelRead(quic.StreamErrorCode(code)) }
func (s rawStream) CancelWrite(code uint64)            { s.s.CancelWrite(quic.StreamErrorCode(code)) }
func (s rawStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s rawStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

type rawRecv struct{ s *quic.ReceiveStream }

func (s rawRecv) Read(b []byte) (int, error)        { return s.s.Read(b) }
func (s rawRecv) CancelRead(code uint64)            { s.s.CancelRead(quic.StreamErrorCode(code)) }
func (s rawRecv) SetReadDeadline(t time.Time) error { return s.s.SetReadDeadline(t) }

type rawSend struct{ s *quic.SendStream }

func (s rawSend) Write(b []byte) (int, error)        { return s.s.Write(b) }
func (s rawSend) Close() error                       { return s.s.Close() }
func (s rawSend) CancelWrite(code uint64)            { s.s.CancelWrite(quic.StreamErrorCode(code)) }
func (s rawSend) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

// wtConn is a MoQ session inside a WebTransport session.
type wtConn struct {
	s     *webtransport.Session
	query url.Values
}

func (w wtConn) Context() context.Context { return w.s.Context() }
func (w wtConn) RemoteAddr() net.Addr     { return w.s.RemoteAddr() }
func (w wtConn) WebTransport() bool       { return true }
func (w wtConn) Query() url.Values        { return w.query }

func (w wtConn) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := w.s.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return wtStream{s}, nil
}

func (w wtConn) AcceptUniStream(ctx context.Context) (ReceiveStream, error) {
	s, err := w.s.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return wtRecv{s}, nil
}

func (w wtConn) OpenStreamSync(ctx context.Context) (Stream, error) {
	s, err := w.s.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return wtStream{s}, nil
}

func (w wtConn) OpenUniStreamSync(ctx context.Context) (SendStream, error) {
	s, err := w.s.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return wtSend{s}, nil
}

// CloseWithError ends the WebTransport session; its error code space is 32 bits
// (a MoQT code beyond it cannot occur: they are all small).
func (w wtConn) CloseWithError(code uint64, reason string) error {
	return w.s.CloseWithError(webtransport.SessionErrorCode(uint32(code)), reason)
}

// WebTransport stream error codes are 32 bits; MoQT's stream codes are small.
type wtStream struct{ s *webtransport.Stream }

func (s wtStream) Read(b []byte) (int, error)  { return s.s.Read(b) }
func (s wtStream) Write(b []byte) (int, error) { return s.s.Write(b) }
func (s wtStream) Close() error                { return s.s.Close() }
func (s wtStream) CancelRead(code uint64)      { s.s.CancelRead(webtransport.StreamErrorCode(uint32(code))) }
func (s wtStream) CancelWrite(code uint64) {
	s.s.CancelWrite(webtransport.StreamErrorCode(uint32(code)))
}
func (s wtStream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s wtStream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

type wtRecv struct{ s *webtransport.ReceiveStream }

func (s wtRecv) Read(b []byte) (int, error)        { return s.s.Read(b) }
func (s wtRecv) CancelRead(code uint64)            { s.s.CancelRead(webtransport.StreamErrorCode(uint32(code))) }
func (s wtRecv) SetReadDeadline(t time.Time) error { return s.s.SetReadDeadline(t) }

type wtSend struct{ s *webtransport.SendStream }

func (s wtSend) Write(b []byte) (int, error)        { return s.s.Write(b) }
func (s wtSend) Close() error                       { return s.s.Close() }
func (s wtSend) CancelWrite(code uint64)            { s.s.CancelWrite(webtransport.StreamErrorCode(uint32(code))) }
func (s wtSend) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }

var (
	_ Conn = rawConn{}
	_ Conn = wtConn{}
)
