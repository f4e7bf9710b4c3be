package push

import (
	"errors"
	"fmt"

	"github.com/sluicegw/sluice/sdk/moqt"
)

var (
	// ErrClosed is returned by calls on a Broadcast or Session after Close.
	ErrClosed = errors.New("push: closed")
	// ErrNoKeyframe is returned by WriteFrame for a delta frame before the
	// track's first keyframe: a group must start at a keyframe.
	ErrNoKeyframe = errors.New("push: a track must start with a keyframe")
)

// RequestError is the server refusing a request with REQUEST_ERROR.
// errors.As to a *moqt.ProtocolError (and so moqt.CodeOf) yields its Code, a
// request error code (moqt.Req...).
type RequestError struct {
	Request string // what was refused, e.g. `PUBLISH_NAMESPACE "cam1"`
	Code    moqt.ErrorCode
	Reason  string
	// RetryAfter is the server's retry interval in milliseconds plus one, as
	// the drafts encode it; 0 means do not retry.
	RetryAfter uint64
}

// Error implements error.
func (e *RequestError) Error() string {
	return fmt.Sprintf("push: server refused %s: %s (request error 0x%x)", e.Request, reasonOr(e.Reason), uint64(e.Code))
}

// As lets moqt.CodeOf find the code.
func (e *RequestError) As(target any) bool {
	if p, ok := target.(**moqt.ProtocolError); ok {
		*p = &moqt.ProtocolError{Code: e.Code, Msg: e.Error()}
		return true
	}
	return false
}

// SessionError is a session that ended with a MoQT termination code: closed
// by the server (Remote) or by this client on the server's protocol error.
// errors.As to a *moqt.ProtocolError yields its Code.
type SessionError struct {
	Code   moqt.ErrorCode
	Reason string
	Remote bool
}

// Error implements error.
func (e *SessionError) Error() string {
	who := "closed the session"
	if e.Remote {
		who = "server closed the session"
	}
	return fmt.Sprintf("push: %s: %s (code 0x%x)", who, reasonOr(e.Reason), uint64(e.Code))
}

// As lets moqt.CodeOf find the code.
func (e *SessionError) As(target any) bool {
	if p, ok := target.(**moqt.ProtocolError); ok {
		*p = &moqt.ProtocolError{Code: e.Code, Msg: e.Error()}
		return true
	}
	return false
}

func reasonOr(r string) string {
	if r == "" {
		return "no reason given"
	}
	return r
}
