package moqt

// Limits the drafts set on fields, enforced by every decoder.
const (
	// MaxNamespaceFields is the most fields a Track Namespace may have.
	MaxNamespaceFields = 32
	// MaxFullTrackName is the most bytes of namespace fields plus track name.
	MaxFullTrackName = 4096
	// MaxReasonPhrase is the longest Reason Phrase.
	MaxReasonPhrase = 1024
	// MaxGoAwayURI is the longest New Session URI in GOAWAY.
	MaxGoAwayURI = 8192
	// MaxParams bounds the parameters one message may carry. The drafts bound
	// only the message length; this keeps a decoder's work per message small.
	MaxParams = 64
	// MaxControlPayload is the largest control message payload (its length is 16 bits).
	MaxControlPayload = 1<<16 - 1
)

// parser reads fields from one message or header in order; the first failure
// sticks, so a decoder reads every field and checks err once.
type parser struct {
	b   []byte
	v   Version
	err error
}

func (p *parser) fail(err error) {
	if p.err == nil {
		p.err = err
	}
	p.b = nil
}

func (p *parser) varint() uint64 {
	if p.err != nil {
		return 0
	}
	x, n, err := ParseVarint(p.b, p.v)
	if err != nil {
		p.fail(err)
		return 0
	}
	p.b = p.b[n:]
	return x
}

func (p *parser) byte() byte {
	if p.err != nil {
		return 0
	}
	if len(p.b) < 1 {
		p.fail(violation("truncated"))
		return 0
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c
}

// bytes reads a varint length then that many bytes, refusing more than max.
func (p *parser) bytes(max int, what string) []byte {
	n := p.varint()
	if p.err != nil {
		return nil
	}
	if n > uint64(max) {
		p.fail(violation("%s of %d bytes exceeds %d", what, n, max))
		return nil
	}
	if uint64(len(p.b)) < n {
		p.fail(violation("truncated %s", what))
		return nil
	}
	out := p.b[:n:n]
	p.b = p.b[n:]
	return out
}

// end fails unless the whole input was consumed: the drafts make a length that
// does not match the payload a PROTOCOL_VIOLATION.
func (p *parser) end(what string) error {
	if p.err == nil && len(p.b) != 0 {
		p.fail(violation("%d bytes left over after %s", len(p.b), what))
	}
	return p.err
}

func appendBytes(b []byte, v Version, p []byte) []byte {
	b = AppendVarint(b, v, uint64(len(p)))
	return append(b, p...)
}

// Location is a {Group, Object} pair.
type Location struct {
	Group, Object uint64
}

func (p *parser) location() Location {
	return Location{Group: p.varint(), Object: p.varint()}
}

func appendLocation(b []byte, v Version, l Location) []byte {
	b = AppendVarint(b, v, l.Group)
	return AppendVarint(b, v, l.Object)
}
