package moqt

import (
	"errors"
	"fmt"
	"io"
)

// Unidirectional stream types: the first varint of every unidirectional stream.
const (
	StreamTypeFetch uint64 = 0x05
	// StreamTypeSetup (draft 17+) opens a control stream; it is also the type of
	// the SETUP message that follows, so the stream reads as one framed message.
	StreamTypeSetup uint64 = TypeSetup
)

// Subgroup header type bits (draft 16/17 §"Subgroup Header").
const (
	subgroupExtensions      = 0x01
	subgroupIDModeMask      = 0x06
	subgroupEndOfGroup      = 0x08
	subgroupBase            = 0x10
	subgroupDefaultPriority = 0x20
	subgroupFirstObject     = 0x40 // draft 18+
)

// SubgroupIDMode says where a subgroup's id comes from.
type SubgroupIDMode uint8

const (
	// SubgroupZero: the id is 0 and not on the wire.
	SubgroupZero SubgroupIDMode = 0
	// SubgroupFirstObject: the id is the first object's id, not on the wire.
	SubgroupFirstObject SubgroupIDMode = 1
	// SubgroupExplicit: the id is in the header.
	SubgroupExplicit SubgroupIDMode = 2
)

// IsSubgroupStream reports whether t, a unidirectional stream's first varint,
// is a valid SUBGROUP_HEADER type in v: 0b00X1XXXX (0b0XX1XXXX in draft 18+)
// without the reserved id mode 0b11.
func IsSubgroupStream(t uint64, v Version) bool {
	var flags uint64 = 0x2f
	if v.requestOKAlias() {
		flags |= subgroupFirstObject
	}
	return t&^flags == subgroupBase && t&subgroupIDModeMask != subgroupIDModeMask
}

// SubgroupHeader opens a unidirectional stream of objects of one subgroup.
type SubgroupHeader struct {
	TrackAlias uint64
	GroupID    uint64
	// SubgroupID is on the wire only with SubgroupExplicit; with
	// SubgroupFirstObject a SubgroupReader fills it in at the first object.
	SubgroupID uint64
	IDMode     SubgroupIDMode
	// HasPriority puts Priority on the wire; without it the subgroup inherits
	// the priority of the subscription.
	HasPriority bool
	Priority    uint8
	// EndOfGroup says this subgroup holds the group's largest object.
	EndOfGroup bool
	// Extensions says every object carries an extensions (properties) block.
	Extensions bool
	// FirstObject (draft 18+) says the stream starts at the subgroup's first
	// object as the original publisher sent it; earlier drafts drop it.
	FirstObject bool
}

// StreamType is the header's type code in v.
func (h SubgroupHeader) StreamType(v Version) uint64 {
	t := uint64(subgroupBase) | uint64(h.IDMode&3)<<1
	if h.Extensions {
		t |= subgroupExtensions
	}
	if h.EndOfGroup {
		t |= subgroupEndOfGroup
	}
	if !h.HasPriority {
		t |= subgroupDefaultPriority
	}
	if h.FirstObject && v.requestOKAlias() {
		t |= subgroupFirstObject
	}
	return t
}

// Append appends the header, type first, in version v.
func (h SubgroupHeader) Append(b []byte, v Version) []byte {
	b = AppendVarint(b, v, h.StreamType(v))
	b = AppendVarint(b, v, h.TrackAlias)
	b = AppendVarint(b, v, h.GroupID)
	if h.IDMode == SubgroupExplicit {
		b = AppendVarint(b, v, h.SubgroupID)
	}
	if h.HasPriority {
		b = append(b, h.Priority)
	}
	return b
}

// ObjectStatus is the status of an object without payload.
type ObjectStatus uint64

// Object statuses.
const (
	StatusNormal     ObjectStatus = 0x0
	StatusEndOfGroup ObjectStatus = 0x3
	StatusEndOfTrack ObjectStatus = 0x4
)

func (s ObjectStatus) valid() bool {
	return s == StatusNormal || s == StatusEndOfGroup || s == StatusEndOfTrack
}

// Object is one object of a subgroup stream or datagram.
type Object struct {
	ID         uint64
	Status     ObjectStatus // not Normal only with an empty payload
	Extensions Params       // only with Status Normal
	Payload    []byte
}

// ErrObjectTooLarge is an object whose payload exceeds the reader's limit. It
// is the receiver's limit, not a protocol violation: a session resets the
// stream or ends the subscription, not the session.
var ErrObjectTooLarge = errors.New("moqt: object exceeds the size limit")

// MaxObjectExtensions bounds an object's extensions block.
const MaxObjectExtensions = 1<<16 - 1

// SubgroupWriter lays out a subgroup stream: the header, then objects with
// increasing ids (delta-encoded). The zero value is not usable; set V and Header.
type SubgroupWriter struct {
	V       Version
	Header  SubgroupHeader
	last    uint64
	started bool
}

// AppendHeader appends the stream header.
func (w *SubgroupWriter) AppendHeader(b []byte) []byte { return w.Header.Append(b, w.V) }

// AppendObject appends o. Its ID must exceed the previous object's.
func (w *SubgroupWriter) AppendObject(b []byte, o Object) ([]byte, error) {
	delta := o.ID
	if w.started {
		if o.ID <= w.last {
			return b, fmt.Errorf("moqt: object id %d after %d", o.ID, w.last)
		}
		delta = o.ID - w.last - 1
	}
	if o.Status != StatusNormal && (len(o.Payload) != 0 || len(o.Extensions) != 0) {
		return b, fmt.Errorf("moqt: object %d with status %d has payload or extensions", o.ID, o.Status)
	}
	if !o.Status.valid() {
		return b, fmt.Errorf("moqt: object status %d", o.Status)
	}
	if len(o.Extensions) != 0 && !w.Header.Extensions {
		return b, fmt.Errorf("moqt: object %d has extensions on a subgroup without them", o.ID)
	}
	w.started, w.last = true, o.ID
	b = AppendVarint(b, w.V, delta)
	if w.Header.Extensions {
		b = appendBytes(b, w.V, appendKVPs(nil, w.V, o.Extensions))
	}
	b = AppendVarint(b, w.V, uint64(len(o.Payload)))
	if len(o.Payload) == 0 {
		return AppendVarint(b, w.V, uint64(o.Status)), nil
	}
	return append(b, o.Payload...), nil
}

// SubgroupReader reads a subgroup stream after its type varint.
type SubgroupReader struct {
	r          io.Reader
	v          Version
	maxPayload int
	// Header is the stream's header, read by NewSubgroupReader.
	Header  SubgroupHeader
	last    uint64
	started bool
	ended   bool
}

// NewSubgroupReader reads the rest of a SUBGROUP_HEADER whose type t the
// caller has read (to tell it from other stream types). Objects over
// maxPayload bytes are refused with ErrObjectTooLarge.
func NewSubgroupReader(r io.Reader, v Version, t uint64, maxPayload int) (*SubgroupReader, error) {
	if !IsSubgroupStream(t, v) {
		return nil, violation("stream type 0x%x is not a subgroup header", t)
	}
	h := SubgroupHeader{
		IDMode:      SubgroupIDMode(t&subgroupIDModeMask) >> 1,
		HasPriority: t&subgroupDefaultPriority == 0,
		EndOfGroup:  t&subgroupEndOfGroup != 0,
		Extensions:  t&subgroupExtensions != 0,
		FirstObject: t&subgroupFirstObject != 0,
	}
	var err error
	if h.TrackAlias, err = ReadVarint(r, v); err != nil {
		return nil, fmt.Errorf("moqt: subgroup track alias: %w", unexpected(err))
	}
	if h.GroupID, err = ReadVarint(r, v); err != nil {
		return nil, fmt.Errorf("moqt: subgroup group id: %w", unexpected(err))
	}
	if h.IDMode == SubgroupExplicit {
		if h.SubgroupID, err = ReadVarint(r, v); err != nil {
			return nil, fmt.Errorf("moqt: subgroup id: %w", unexpected(err))
		}
	}
	if h.HasPriority {
		var p [1]byte
		if _, err := io.ReadFull(r, p[:]); err != nil {
			return nil, fmt.Errorf("moqt: subgroup priority: %w", unexpected(err))
		}
		h.Priority = p[0]
	}
	return &SubgroupReader{r: r, v: v, maxPayload: maxPayload, Header: h}, nil
}

// ReadObject reads the next object. It returns io.EOF when the stream ends
// cleanly between objects, and io.ErrUnexpectedEOF inside one (which the drafts
// make a PROTOCOL_VIOLATION when the stream ended with FIN).
func (s *SubgroupReader) ReadObject() (Object, error) {
	delta, err := ReadVarint(s.r, s.v)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Object{}, io.EOF
		}
		return Object{}, fmt.Errorf("moqt: object id: %w", err)
	}
	if s.ended {
		return Object{}, violation("object after end of group or track")
	}
	o := Object{ID: delta}
	if s.started {
		o.ID = s.last + 1 + delta
		if o.ID <= s.last {
			return Object{}, violation("object id delta wraps past 2^64")
		}
	} else if s.Header.IDMode == SubgroupFirstObject {
		s.Header.SubgroupID = o.ID
	}
	if s.Header.Extensions {
		if o.Extensions, err = s.readExtensions(); err != nil {
			return Object{}, err
		}
	}
	if err := s.readPayload(&o); err != nil {
		return Object{}, err
	}
	s.started, s.last = true, o.ID
	return o, nil
}

func (s *SubgroupReader) readExtensions() (Params, error) {
	n, err := ReadVarint(s.r, s.v)
	if err != nil {
		return nil, fmt.Errorf("moqt: object extensions length: %w", unexpected(err))
	}
	if n > MaxObjectExtensions {
		return nil, violation("object extensions of %d bytes", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(s.r, buf); err != nil {
		return nil, fmt.Errorf("moqt: object extensions: %w", unexpected(err))
	}
	p := parser{b: buf, v: s.v}
	ext := p.kvpsToEnd()
	if p.err != nil {
		return nil, fmt.Errorf("moqt: object extensions: %w", p.err)
	}
	return ext, nil
}

func (s *SubgroupReader) readPayload(o *Object) error {
	n, err := ReadVarint(s.r, s.v)
	if err != nil {
		return fmt.Errorf("moqt: object payload length: %w", unexpected(err))
	}
	if n == 0 {
		st, err := ReadVarint(s.r, s.v)
		if err != nil {
			return fmt.Errorf("moqt: object status: %w", unexpected(err))
		}
		o.Status = ObjectStatus(st)
		if !o.Status.valid() {
			return violation("object status 0x%x", st)
		}
		if o.Status != StatusNormal {
			if len(o.Extensions) != 0 {
				return violation("extensions on an object with status 0x%x", st)
			}
			s.ended = true
		}
		return nil
	}
	if n > uint64(s.maxPayload) {
		return fmt.Errorf("moqt: object %d of %d bytes: %w", o.ID, n, ErrObjectTooLarge)
	}
	o.Payload = make([]byte, n)
	if _, err := io.ReadFull(s.r, o.Payload); err != nil {
		return fmt.Errorf("moqt: object payload: %w", unexpected(err))
	}
	return nil
}
