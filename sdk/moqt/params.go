package moqt

import (
	"fmt"
	"slices"
)

// Param is one Key-Value-Pair: a setup parameter, message parameter, track
// property or object extension. Even types carry Value; odd types carry Bytes.
// Draft 17+ message parameters are typed per parameter instead of by parity:
// there a uint8 or varint parameter carries Value (a uint8 keeps its low 8
// bits) and a Location, Track Namespace or length-prefixed one carries Bytes (a
// Location or namespace as its wire encoding).
type Param struct {
	Type  uint64
	Value uint64
	Bytes []byte
}

// Params is an ordered list of Param; encoders sort it by Type, as the delta
// encoding of types requires.
type Params []Param

// Setup parameter (draft 16) / Setup Option (draft 17) types.
const (
	SetupPath              uint64 = 0x01
	SetupMaxRequestID      uint64 = 0x02
	SetupAuthToken         uint64 = 0x03
	SetupMaxAuthTokenCache uint64 = 0x04
	SetupAuthority         uint64 = 0x05
	SetupImplementation    uint64 = 0x07
)

// Setup option types added by draft 19.
const (
	SetupMaxFilterRanges   uint64 = 0x06
	SetupMaxRequestUpdates uint64 = 0x08
)

// Message parameter types. Drafts 16, 17 and 19 share the numbers they have
// in common; draft 19 renames 0x02 OBJECT_DELIVERY_TIMEOUT and 0x21
// LOCATION_FILTER and adds the rest.
const (
	ParamDeliveryTimeout    uint64 = 0x02
	ParamAuthToken          uint64 = 0x03
	ParamRendezvousTimeout  uint64 = 0x04 // draft 17+
	ParamExpires            uint64 = 0x08
	ParamLargestObject      uint64 = 0x09
	ParamForward            uint64 = 0x10
	ParamSubscriberPriority uint64 = 0x20
	ParamSubscriptionFilter uint64 = 0x21
	ParamGroupOrder         uint64 = 0x22
	ParamNewGroupRequest    uint64 = 0x32

	ParamSubgroupDeliveryTimeout uint64 = 0x06 // draft 19
	ParamFillTimeout             uint64 = 0x0A // draft 19
	ParamSubgroupFilter          uint64 = 0x25 // draft 19 range filters, 0x25..0x29
	ParamObjectIDFilter          uint64 = 0x26
	ParamPriorityFilter          uint64 = 0x27
	ParamObjectPropertyFilter    uint64 = 0x28
	ParamTrackPropertyFilter     uint64 = 0x29
	ParamTrackNamespacePrefix    uint64 = 0x34 // draft 19: a Track Namespace
)

// MaxParamBytes is the longest odd-typed value (draft 16/17 §Key-Value-Pair).
const MaxParamBytes = 1<<16 - 1

// Get returns the first Param of type t.
func (ps Params) Get(t uint64) (Param, bool) {
	for _, p := range ps {
		if p.Type == t {
			return p, true
		}
	}
	return Param{}, false
}

// paramEncoding is how a draft 17 message parameter's value is laid out.
type paramEncoding int

const (
	encVarint paramEncoding = iota
	encUint8
	encLocation
	encLength
	encNamespace
)

// d17ParamEncoding is the table of draft 17 §"Message Parameters".
var d17ParamEncoding = map[uint64]paramEncoding{
	ParamDeliveryTimeout: encVarint, ParamAuthToken: encLength, ParamRendezvousTimeout: encVarint,
	ParamExpires: encVarint, ParamLargestObject: encLocation, ParamForward: encUint8,
	ParamSubscriberPriority: encUint8, ParamSubscriptionFilter: encLength, ParamGroupOrder: encUint8,
	ParamNewGroupRequest: encVarint,
}

// d19ParamEncoding is the table of draft 19 §"Message Parameters". The draft
// gives no encoding for RENDEZVOUS_TIMEOUT and FILL_TIMEOUT, durations in
// milliseconds like the delivery timeouts, which are varints.
var d19ParamEncoding = map[uint64]paramEncoding{
	ParamDeliveryTimeout: encVarint, ParamAuthToken: encLength, ParamRendezvousTimeout: encVarint,
	ParamSubgroupDeliveryTimeout: encVarint, ParamExpires: encVarint, ParamLargestObject: encLocation,
	ParamFillTimeout: encVarint, ParamForward: encUint8, ParamSubscriberPriority: encUint8,
	ParamSubscriptionFilter: encLength, ParamGroupOrder: encUint8, ParamSubgroupFilter: encLength,
	ParamObjectIDFilter: encLength, ParamPriorityFilter: encLength, ParamObjectPropertyFilter: encLength,
	ParamTrackPropertyFilter: encLength, ParamNewGroupRequest: encVarint, ParamTrackNamespacePrefix: encNamespace,
}

func paramTable(v Version) map[uint64]paramEncoding {
	if v.requestOKAlias() {
		return d19ParamEncoding
	}
	return d17ParamEncoding
}

func sortedParams(ps Params) Params {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Param) int {
		switch {
		case a.Type < b.Type:
			return -1
		case a.Type > b.Type:
			return 1
		}
		return 0
	})
	return out
}

// appendKVPs appends pairs with delta-encoded types and parity-chosen values.
func appendKVPs(b []byte, v Version, ps Params) []byte {
	prev := uint64(0)
	for _, p := range sortedParams(ps) {
		b = AppendVarint(b, v, p.Type-prev)
		prev = p.Type
		if p.Type%2 == 0 {
			b = AppendVarint(b, v, p.Value)
		} else {
			b = appendBytes(b, v, p.Bytes)
		}
	}
	return b
}

// kvp reads one pair after prev, by parity.
func (p *parser) kvp(prev uint64) Param {
	delta := p.varint()
	if p.err != nil {
		return Param{}
	}
	t := prev + delta
	if t < prev {
		p.fail(violation("key-value type delta wraps past 2^64"))
		return Param{}
	}
	if t%2 == 0 {
		return Param{Type: t, Value: p.varint()}
	}
	return Param{Type: t, Bytes: p.bytes(MaxParamBytes, "key-value value")}
}

// kvpsToEnd reads pairs until the input is exhausted (draft 17 Setup Options,
// track properties / extensions at the end of a message).
func (p *parser) kvpsToEnd() Params {
	var ps Params
	prev := uint64(0)
	for p.err == nil && len(p.b) > 0 {
		if len(ps) == MaxParams {
			p.fail(violation("more than %d key-value pairs", MaxParams))
			return nil
		}
		kv := p.kvp(prev)
		prev = kv.Type
		ps = append(ps, kv)
	}
	return ps
}

// countedKVPs reads "Number of Parameters" then that many pairs.
func (p *parser) countedKVPs() Params {
	n := p.varint()
	if p.err != nil {
		return nil
	}
	if n > MaxParams {
		p.fail(violation("%d parameters exceed %d", n, MaxParams))
		return nil
	}
	ps := make(Params, 0, n)
	prev := uint64(0)
	for i := uint64(0); i < n && p.err == nil; i++ {
		kv := p.kvp(prev)
		prev = kv.Type
		ps = append(ps, kv)
	}
	return ps
}

// appendMessageParams appends "Number of Parameters" and the parameters.
func appendMessageParams(b []byte, v Version, ps Params) []byte {
	b = AppendVarint(b, v, uint64(len(ps)))
	if !v.requestStreams() {
		return appendKVPs(b, v, ps)
	}
	prev := uint64(0)
	for _, p := range sortedParams(ps) {
		b = AppendVarint(b, v, p.Type-prev)
		prev = p.Type
		switch paramTable(v)[p.Type] {
		case encUint8:
			b = append(b, byte(p.Value))
		case encLocation, encNamespace:
			b = append(b, p.Bytes...)
		case encLength:
			b = appendBytes(b, v, p.Bytes)
		default:
			b = AppendVarint(b, v, p.Value)
		}
	}
	return b
}

// messageParams reads a message's parameters, rejecting unknown (draft 17) and
// repeated types, as the drafts require of Message Parameters.
func (p *parser) messageParams() Params {
	if !p.v.requestStreams() {
		ps := p.countedKVPs()
		p.checkDuplicates(ps)
		return ps
	}
	n := p.varint()
	if p.err != nil {
		return nil
	}
	if n > MaxParams {
		p.fail(violation("%d parameters exceed %d", n, MaxParams))
		return nil
	}
	ps := make(Params, 0, n)
	prev := uint64(0)
	for i := uint64(0); i < n && p.err == nil; i++ {
		t := prev + p.varint()
		if p.err == nil && t < prev {
			p.fail(violation("parameter type delta wraps past 2^64"))
		}
		prev = t
		ps = append(ps, p.typedParam(t))
	}
	p.checkDuplicates(ps)
	return ps
}

func (p *parser) typedParam(t uint64) Param {
	enc, known := paramTable(p.v)[t]
	if p.err != nil {
		return Param{}
	}
	if !known {
		p.fail(violation("unknown message parameter 0x%x", t))
		return Param{}
	}
	switch enc {
	case encUint8:
		return Param{Type: t, Value: uint64(p.byte())}
	case encLocation, encNamespace:
		// Kept as their wire bytes, as draft 16 carries them inside an odd
		// parameter, so one Param shape serves every version.
		start := p.b
		if enc == encLocation {
			p.location()
		} else {
			p.namespace()
		}
		if p.err != nil {
			return Param{}
		}
		return Param{Type: t, Bytes: start[: len(start)-len(p.b) : len(start)-len(p.b)]}
	case encLength:
		return Param{Type: t, Bytes: p.bytes(MaxParamBytes, "parameter value")}
	}
	return Param{Type: t, Value: p.varint()}
}

func (p *parser) checkDuplicates(ps Params) {
	for i := 1; i < len(ps) && p.err == nil; i++ {
		if ps[i].Type == ps[i-1].Type {
			p.fail(violation("parameter 0x%x repeated", ps[i].Type))
		}
	}
}

// LargestObject decodes a LARGEST_OBJECT parameter's Location.
func (ps Params) LargestObject(v Version) (Location, bool, error) {
	prm, ok := ps.Get(ParamLargestObject)
	if !ok {
		return Location{}, false, nil
	}
	p := parser{b: prm.Bytes, v: v}
	l := p.location()
	if err := p.end("LARGEST_OBJECT"); err != nil {
		return Location{}, true, fmt.Errorf("moqt: LARGEST_OBJECT parameter: %w", err)
	}
	return l, true, nil
}

// LargestObjectParam builds a LARGEST_OBJECT parameter for v.
func LargestObjectParam(v Version, l Location) Param {
	return Param{Type: ParamLargestObject, Bytes: appendLocation(nil, v, l)}
}
