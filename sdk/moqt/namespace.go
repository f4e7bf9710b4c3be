package moqt

import "strings"

// Namespace is a Track Namespace: an ordered tuple of byte fields. moq-dev's
// clients split a broadcast path on "/" into fields ("live/cam1.hang" is
// {"live", "cam1.hang"}); see [NamespaceFromPath].
type Namespace []string

// NamespaceFromPath splits a moq-dev broadcast path into namespace fields.
func NamespaceFromPath(path string) Namespace {
	if path == "" {
		return Namespace{}
	}
	return Namespace(strings.Split(path, "/"))
}

// Path joins the fields with "/", the inverse of NamespaceFromPath.
func (n Namespace) Path() string { return strings.Join(n, "/") }

// Equal reports whether n and o have the same fields.
func (n Namespace) Equal(o Namespace) bool {
	if len(n) != len(o) {
		return false
	}
	for i := range n {
		if n[i] != o[i] {
			return false
		}
	}
	return true
}

func (n Namespace) size() int {
	s := 0
	for _, f := range n {
		s += len(f)
	}
	return s
}

// validate applies the drafts' rules: 1..32 fields in draft 16 (draft 17 allows
// zero), no empty field, at most MaxFullTrackName bytes with the track name.
func (n Namespace) validate(v Version, trackName int) error {
	if len(n) > MaxNamespaceFields || (len(n) == 0 && !v.requestStreams()) {
		return violation("namespace of %d fields", len(n))
	}
	for _, f := range n {
		if f == "" {
			return violation("empty namespace field")
		}
	}
	if n.size()+trackName > MaxFullTrackName {
		return violation("full track name over %d bytes", MaxFullTrackName)
	}
	return nil
}

func appendNamespace(b []byte, v Version, n Namespace) []byte {
	b = AppendVarint(b, v, uint64(len(n)))
	for _, f := range n {
		b = appendBytes(b, v, []byte(f))
	}
	return b
}

func (p *parser) namespace() Namespace {
	count := p.varint()
	if p.err != nil {
		return nil
	}
	if count > MaxNamespaceFields {
		p.fail(violation("namespace of %d fields", count))
		return nil
	}
	n := make(Namespace, 0, count)
	for i := uint64(0); i < count && p.err == nil; i++ {
		n = append(n, string(p.bytes(MaxFullTrackName, "namespace field")))
	}
	if p.err == nil {
		if err := n.validate(p.v, 0); err != nil {
			p.fail(err)
		}
	}
	return n
}

// fullTrackName reads a namespace and a track name and checks their joint size.
func (p *parser) fullTrackName() (Namespace, string) {
	ns := p.namespace()
	name := string(p.bytes(MaxFullTrackName, "track name"))
	if p.err == nil {
		if err := ns.validate(p.v, len(name)); err != nil {
			p.fail(err)
		}
	}
	return ns, name
}
