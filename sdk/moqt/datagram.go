package moqt

// Object datagram type bits (draft 16/17 §"Object Datagram").
const (
	dgExtensions      = 0x01
	dgEndOfGroup      = 0x02
	dgZeroObjectID    = 0x04
	dgDefaultPriority = 0x08
	dgStatus          = 0x20
)

// Datagram is one OBJECT_DATAGRAM: a whole object in a QUIC datagram.
type Datagram struct {
	TrackAlias  uint64
	GroupID     uint64
	Object      Object
	HasPriority bool
	Priority    uint8
	// EndOfGroup says no object with a larger id exists in the group; it
	// cannot be combined with a status (non-Normal, or empty-payload Normal).
	EndOfGroup bool
}

// datagramType picks the type bits for d; hasStatus is whether an Object
// Status replaces the payload (any object with an empty payload).
func (d Datagram) datagramType() uint64 {
	var t uint64
	if len(d.Object.Extensions) != 0 {
		t |= dgExtensions
	}
	if d.Object.ID == 0 {
		t |= dgZeroObjectID
	}
	if !d.HasPriority {
		t |= dgDefaultPriority
	}
	if len(d.Object.Payload) == 0 {
		t |= dgStatus
	} else if d.EndOfGroup {
		t |= dgEndOfGroup
	}
	return t
}

// Append appends the datagram in version v. EndOfGroup is dropped for an
// object without payload, where the wire cannot carry it.
func (d Datagram) Append(b []byte, v Version) []byte {
	t := d.datagramType()
	b = AppendVarint(b, v, t)
	b = AppendVarint(b, v, d.TrackAlias)
	b = AppendVarint(b, v, d.GroupID)
	if t&dgZeroObjectID == 0 {
		b = AppendVarint(b, v, d.Object.ID)
	}
	if d.HasPriority {
		b = append(b, d.Priority)
	}
	if t&dgExtensions != 0 {
		b = appendBytes(b, v, appendKVPs(nil, v, d.Object.Extensions))
	}
	if t&dgStatus != 0 {
		return AppendVarint(b, v, uint64(d.Object.Status))
	}
	return append(b, d.Object.Payload...)
}

// ParseDatagram decodes one OBJECT_DATAGRAM. The payload aliases b.
func ParseDatagram(b []byte, v Version) (Datagram, error) {
	p := parser{b: b, v: v}
	t := p.varint()
	if p.err != nil {
		return Datagram{}, p.err
	}
	if t&^0x2f != 0 || (t&dgStatus != 0 && t&dgEndOfGroup != 0) {
		return Datagram{}, violation("datagram type 0x%x", t)
	}
	d := Datagram{
		TrackAlias:  p.varint(),
		GroupID:     p.varint(),
		HasPriority: t&dgDefaultPriority == 0,
		EndOfGroup:  t&dgEndOfGroup != 0,
	}
	if t&dgZeroObjectID == 0 {
		d.Object.ID = p.varint()
	}
	if d.HasPriority {
		d.Priority = p.byte()
	}
	if t&dgExtensions != 0 {
		raw := p.bytes(MaxObjectExtensions, "datagram extensions")
		if p.err == nil && len(raw) == 0 {
			return Datagram{}, violation("datagram extensions bit with an empty block")
		}
		ext := parser{b: raw, v: v}
		d.Object.Extensions = ext.kvpsToEnd()
		if ext.err != nil {
			return Datagram{}, ext.err
		}
	}
	if t&dgStatus != 0 {
		d.Object.Status = ObjectStatus(p.varint())
		if err := p.end("datagram"); err != nil {
			return Datagram{}, err
		}
		if !d.Object.Status.valid() {
			return Datagram{}, violation("object status 0x%x", uint64(d.Object.Status))
		}
		if d.Object.Status != StatusNormal && len(d.Object.Extensions) != 0 {
			return Datagram{}, violation("extensions on an object with status 0x%x", uint64(d.Object.Status))
		}
		return d, nil
	}
	if p.err != nil {
		return Datagram{}, p.err
	}
	d.Object.Payload = p.b
	return d, nil
}
