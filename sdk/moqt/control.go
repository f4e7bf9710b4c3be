package moqt

import (
	"errors"
	"fmt"
	"io"
)

// Control message types. Draft 16 carries them on one bidirectional control
// stream; draft 17 carries SETUP and GOAWAY on a pair of unidirectional control
// streams and every request with its responses on a bidirectional stream of its own.
const (
	TypeRequestUpdate          uint64 = 0x2
	TypeSubscribe              uint64 = 0x3
	TypeSubscribeOK            uint64 = 0x4
	TypeRequestError           uint64 = 0x5
	TypePublishNamespace       uint64 = 0x6
	TypeRequestOK              uint64 = 0x7
	TypePublishNamespaceDone   uint64 = 0x9 // draft 16 only
	TypeUnsubscribe            uint64 = 0xA // draft 16 only
	TypePublishDone            uint64 = 0xB
	TypePublishNamespaceCancel uint64 = 0xC // draft 16 only
	TypeGoAway                 uint64 = 0x10
	TypeMaxRequestID           uint64 = 0x15 // draft 16 only
	TypeRequestsBlocked        uint64 = 0x1A // draft 16 only
	TypePublish                uint64 = 0x1D
	TypePublishOK              uint64 = 0x1E   // drafts 16, 17; REQUEST_OK in 18+
	TypeClientSetup            uint64 = 0x20   // draft 16 only
	TypeServerSetup            uint64 = 0x21   // draft 16 only
	TypeSetup                  uint64 = 0x2F00 // draft 17+; also its control stream's type
)

// Message is one control message. Append writes it framed (type, 16-bit
// length, payload) in version v; decodePayload parses the payload.
type Message interface {
	// Type is the message type code in the version the message was made for.
	Type() uint64
	// Append appends the framed message in version v.
	Append(b []byte, v Version) []byte
	appendPayload(b []byte, v Version) []byte
	decodePayload(p *parser)
}

// newMessage returns an empty message of type t as v defines it, or nil.
func newMessage(v Version, t uint64) Message {
	var m Message
	switch t {
	case TypeSubscribe:
		m = &Subscribe{}
	case TypeSubscribeOK:
		m = &SubscribeOK{}
	case TypeRequestError:
		m = &RequestError{}
	case TypePublishNamespace:
		m = &PublishNamespace{}
	case TypeRequestOK:
		m = &RequestOK{}
	case TypePublishDone:
		m = &PublishDone{}
	case TypeGoAway:
		m = &GoAway{}
	case TypePublish:
		m = &Publish{}
	case TypePublishOK:
		if !v.requestOKAlias() {
			m = &PublishOK{}
		}
	}
	if m != nil {
		return m
	}
	if v.requestStreams() {
		if t == TypeSetup {
			return &Setup{}
		}
		return nil
	}
	switch t {
	case TypePublishNamespaceDone:
		m = &PublishNamespaceDone{}
	case TypeUnsubscribe:
		m = &Unsubscribe{}
	case TypePublishNamespaceCancel:
		m = &PublishNamespaceCancel{}
	case TypeMaxRequestID:
		m = &MaxRequestID{}
	case TypeRequestsBlocked:
		m = &RequestsBlocked{}
	case TypeClientSetup:
		m = &ClientSetup{}
	case TypeServerSetup:
		m = &ServerSetup{}
	}
	return m
}

// appendFramed appends type, 16-bit length and payload. A payload over
// MaxControlPayload is a caller error (namespaces and parameters are bounded
// far below it); it panics rather than write a frame the peer would misread.
func appendFramed(b []byte, v Version, m Message) []byte {
	b = AppendVarint(b, v, m.Type())
	at := len(b)
	b = append(b, 0, 0)
	b = m.appendPayload(b, v)
	n := len(b) - at - 2
	if n > MaxControlPayload {
		panic(fmt.Sprintf("moqt: control message 0x%x payload of %d bytes", m.Type(), n))
	}
	b[at], b[at+1] = byte(n>>8), byte(n)
	return b
}

// DecodeMessage parses the payload of a message of type t in version v. An
// unknown type is an *UnknownMessageError; bad payloads are *ProtocolError.
func DecodeMessage(t uint64, payload []byte, v Version) (Message, error) {
	if !v.Valid() {
		return nil, fmt.Errorf("moqt: decode with unsupported %s", v)
	}
	m := newMessage(v, t)
	if m == nil {
		return nil, &UnknownMessageError{Type: t, Version: v}
	}
	p := parser{b: payload, v: v}
	m.decodePayload(&p)
	if err := p.end(fmt.Sprintf("message 0x%x", t)); err != nil {
		return nil, fmt.Errorf("moqt: decode message 0x%x: %w", t, err)
	}
	return m, nil
}

// ParseMessage parses one framed message from the start of b and returns it
// with the number of bytes it took. A b that holds only part of a message
// yields an error wrapping io.ErrUnexpectedEOF.
func ParseMessage(b []byte, v Version) (Message, int, error) {
	if len(b) == 0 || (varintSize(v, b[0]) != 0 && len(b) < varintSize(v, b[0])) {
		return nil, 0, fmt.Errorf("moqt: message type: %w", io.ErrUnexpectedEOF)
	}
	t, n, err := ParseVarint(b, v)
	if err != nil {
		return nil, 0, fmt.Errorf("moqt: message type: %w", err)
	}
	if len(b) < n+2 {
		return nil, 0, fmt.Errorf("moqt: message length: %w", io.ErrUnexpectedEOF)
	}
	size := int(b[n])<<8 | int(b[n+1])
	if len(b) < n+2+size {
		return nil, 0, fmt.Errorf("moqt: message payload: %w", io.ErrUnexpectedEOF)
	}
	m, err := DecodeMessage(t, b[n+2:n+2+size], v)
	return m, n + 2 + size, err
}

// ReadMessage reads one framed control message from r. A payload longer than
// limit (at most MaxControlPayload; 0 means MaxControlPayload) is refused before
// it is read. An r that ends between messages yields io.EOF; inside one,
// io.ErrUnexpectedEOF.
func ReadMessage(r io.Reader, v Version, limit int) (Message, error) {
	if limit <= 0 || limit > MaxControlPayload {
		limit = MaxControlPayload
	}
	t, err := ReadVarint(r, v)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("moqt: read message type: %w", err)
	}
	if newMessage(v, t) == nil {
		return nil, &UnknownMessageError{Type: t, Version: v}
	}
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("moqt: read length of message 0x%x: %w", t, unexpected(err))
	}
	size := int(hdr[0])<<8 | int(hdr[1])
	if size > limit {
		return nil, violation("message 0x%x of %d bytes exceeds the limit of %d", t, size, limit)
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("moqt: read message 0x%x: %w", t, unexpected(err))
	}
	return DecodeMessage(t, payload, v)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
