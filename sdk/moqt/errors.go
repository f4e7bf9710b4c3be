package moqt

import (
	"errors"
	"fmt"
)

// ErrorCode is a MoQT error code: a session termination code, a request error
// code, a PUBLISH_DONE status or a stream reset code, depending on where it is sent.
type ErrorCode uint64

// Session termination codes (draft 16 and 17 §"Termination"). The session layer
// closes the QUIC connection or WebTransport session with one of these.
const (
	CodeNoError                 ErrorCode = 0x0
	CodeInternalError           ErrorCode = 0x1
	CodeUnauthorized            ErrorCode = 0x2
	CodeProtocolViolation       ErrorCode = 0x3
	CodeInvalidRequestID        ErrorCode = 0x4
	CodeDuplicateTrackAlias     ErrorCode = 0x5
	CodeKeyValueFormattingError ErrorCode = 0x6
	// CodeTooManyRequests is 0x7 in draft 16; draft 17 reuses 0x7 as
	// CodeInvalidRequiredRequestID since it dropped MAX_REQUEST_ID.
	CodeTooManyRequests          ErrorCode = 0x7
	CodeInvalidRequiredRequestID ErrorCode = 0x7
	CodeInvalidPath              ErrorCode = 0x8
	CodeMalformedPath            ErrorCode = 0x9
	CodeGoawayTimeout            ErrorCode = 0x10
	CodeControlMessageTimeout    ErrorCode = 0x11
	CodeDataStreamTimeout        ErrorCode = 0x12
	CodeAuthTokenCacheOverflow   ErrorCode = 0x13
	CodeDuplicateAuthTokenAlias  ErrorCode = 0x14
	CodeVersionNegotiationFailed ErrorCode = 0x15
	CodeMalformedAuthToken       ErrorCode = 0x16
	CodeUnknownAuthTokenAlias    ErrorCode = 0x17
	CodeExpiredAuthToken         ErrorCode = 0x18
	CodeInvalidAuthority         ErrorCode = 0x19
	CodeMalformedAuthority       ErrorCode = 0x1A
	CodeTooManyRequestUpdates    ErrorCode = 0x1B // draft 19
)

// Request error codes, sent in REQUEST_ERROR and PUBLISH_NAMESPACE_CANCEL.
const (
	ReqInternalError           ErrorCode = 0x0
	ReqUnauthorized            ErrorCode = 0x1
	ReqTimeout                 ErrorCode = 0x2
	ReqNotSupported            ErrorCode = 0x3
	ReqMalformedAuthToken      ErrorCode = 0x4
	ReqExpiredAuthToken        ErrorCode = 0x5
	ReqGoingAway               ErrorCode = 0x6 // draft 17+
	ReqExcessiveLoad           ErrorCode = 0x9 // draft 17+
	ReqDoesNotExist            ErrorCode = 0x10
	ReqInvalidRange            ErrorCode = 0x11
	ReqMalformedTrack          ErrorCode = 0x12
	ReqDuplicateSubscription   ErrorCode = 0x19
	ReqUninterested            ErrorCode = 0x20
	ReqPrefixOverlap           ErrorCode = 0x30
	ReqNamespaceTooLarge       ErrorCode = 0x31 // draft 17+
	ReqInvalidJoiningRequestID ErrorCode = 0x32
	ReqUnsupportedExtension    ErrorCode = 0x33 // draft 19
	ReqRedirect                ErrorCode = 0x34 // draft 18+: REQUEST_ERROR carries a Redirect
	ReqConflictingFilters      ErrorCode = 0x35 // draft 19
	ReqInvalidFilter           ErrorCode = 0x36 // draft 19
)

// PUBLISH_DONE status codes.
const (
	DoneInternalError     ErrorCode = 0x0
	DoneUnauthorized      ErrorCode = 0x1
	DoneTrackEnded        ErrorCode = 0x2
	DoneSubscriptionEnded ErrorCode = 0x3
	DoneGoingAway         ErrorCode = 0x4
	DoneExpired           ErrorCode = 0x5
	DoneTooFarBehind      ErrorCode = 0x6
	DoneUpdateFailed      ErrorCode = 0x8
	DoneExcessiveLoad     ErrorCode = 0x9 // draft 17+
	DoneMalformedTrack    ErrorCode = 0x12
)

// Data stream reset codes (RESET_STREAM / STOP_SENDING on subgroup streams).
const (
	ResetInternalError       ErrorCode = 0x0
	ResetCancelled           ErrorCode = 0x1
	ResetDeliveryTimeout     ErrorCode = 0x2
	ResetSessionClosed       ErrorCode = 0x3
	ResetUnknownObjectStatus ErrorCode = 0x4
	ResetTooFarBehind        ErrorCode = 0x5 // draft 17+
	ResetExcessiveLoad       ErrorCode = 0x9 // draft 17+
	ResetMalformedTrack      ErrorCode = 0x12
)

// ProtocolError is malformed or disallowed input. Code is the session
// termination code the drafts require in answer.
type ProtocolError struct {
	Code ErrorCode
	Msg  string
}

// Error implements error.
func (e *ProtocolError) Error() string {
	return fmt.Sprintf("moqt: %s (code 0x%x)", e.Msg, uint64(e.Code))
}

// UnknownMessageError is a control message type the negotiated version does not
// define. The drafts require closing the session with PROTOCOL_VIOLATION;
// errors.As to a *ProtocolError yields that code.
type UnknownMessageError struct {
	Type    uint64
	Version Version
}

// Error implements error.
func (e *UnknownMessageError) Error() string { return "moqt: " + e.msg() }

// Code is the termination code the drafts require: PROTOCOL_VIOLATION.
func (e *UnknownMessageError) Code() ErrorCode { return CodeProtocolViolation }

func (e *UnknownMessageError) msg() string {
	return fmt.Sprintf("unknown control message type 0x%x in %s", e.Type, e.Version)
}

// As lets errors.As(err, &*ProtocolError) find the code to close with.
func (e *UnknownMessageError) As(target any) bool {
	if p, ok := target.(**ProtocolError); ok {
		*p = &ProtocolError{Code: e.Code(), Msg: e.msg()}
		return true
	}
	return false
}

func violation(format string, args ...any) error {
	return &ProtocolError{Code: CodeProtocolViolation, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the termination code for err: the ProtocolError's code, or
// INTERNAL_ERROR for anything else (I/O failures, for example).
func CodeOf(err error) ErrorCode {
	var p *ProtocolError
	if errors.As(err, &p) {
		return p.Code
	}
	return CodeInternalError
}
