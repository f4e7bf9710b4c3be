package moqt

// ClientSetup is draft 16's CLIENT_SETUP, the client's first message on the
// control stream. Draft 15+ negotiate the version by ALPN, so it lists none.
type ClientSetup struct {
	Params Params // Setup parameters: SetupPath, SetupMaxRequestID, ...
}

// ServerSetup is draft 16's SERVER_SETUP, the server's answer to ClientSetup.
type ServerSetup struct {
	Params Params
}

// Setup is draft 17's SETUP, the first message of each endpoint's
// unidirectional control stream (stream type 0x2F00, then this message).
type Setup struct {
	Params Params // Setup Options, read to the end of the message
}

// Type implements Message.
func (*ClientSetup) Type() uint64 { return TypeClientSetup }

// Type implements Message.
func (*ServerSetup) Type() uint64 { return TypeServerSetup }

// Type implements Message.
func (*Setup) Type() uint64 { return TypeSetup }

// Append implements Message.
func (m *ClientSetup) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

// Append implements Message.
func (m *ServerSetup) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

// Append implements Message.
func (m *Setup) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func appendSetupParams(b []byte, v Version, ps Params) []byte {
	b = AppendVarint(b, v, uint64(len(ps)))
	return appendKVPs(b, v, ps)
}

func (m *ClientSetup) appendPayload(b []byte, v Version) []byte {
	return appendSetupParams(b, v, m.Params)
}

func (m *ServerSetup) appendPayload(b []byte, v Version) []byte {
	return appendSetupParams(b, v, m.Params)
}

func (m *Setup) appendPayload(b []byte, v Version) []byte { return appendKVPs(b, v, m.Params) }

// Setup parameters may repeat (unknown ones must be tolerated), so no
// duplicate check here, unlike message parameters.
func (m *ClientSetup) decodePayload(p *parser) { m.Params = p.countedKVPs() }
func (m *ServerSetup) decodePayload(p *parser) { m.Params = p.countedKVPs() }
func (m *Setup) decodePayload(p *parser)       { m.Params = p.kvpsToEnd() }

// GoAway asks the peer to move to NewSessionURI (empty: reconnect to the same
// URI). Timeout (draft 17+) is how long, in milliseconds, before the sender
// closes the session; draft 16 has no such field.
type GoAway struct {
	NewSessionURI string
	Timeout       uint64
}

// Type implements Message.
func (*GoAway) Type() uint64 { return TypeGoAway }

// Append implements Message.
func (m *GoAway) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *GoAway) appendPayload(b []byte, v Version) []byte {
	b = appendBytes(b, v, []byte(m.NewSessionURI))
	if v.requestStreams() {
		b = AppendVarint(b, v, m.Timeout)
	}
	return b
}

func (m *GoAway) decodePayload(p *parser) {
	m.NewSessionURI = string(p.bytes(MaxGoAwayURI, "GOAWAY URI"))
	if p.v.requestStreams() {
		m.Timeout = p.varint()
	}
}

// MaxRequestID (draft 16) raises the peer's request id limit: the peer may use
// ids below RequestID.
type MaxRequestID struct {
	RequestID uint64
}

// RequestsBlocked (draft 16) says the sender wants to open a request but is
// held at MaxRequestID.
type RequestsBlocked struct {
	MaxRequestID uint64
}

// Type implements Message.
func (*MaxRequestID) Type() uint64 { return TypeMaxRequestID }

// Type implements Message.
func (*RequestsBlocked) Type() uint64 { return TypeRequestsBlocked }

// Append implements Message.
func (m *MaxRequestID) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

// Append implements Message.
func (m *RequestsBlocked) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *MaxRequestID) appendPayload(b []byte, v Version) []byte {
	return AppendVarint(b, v, m.RequestID)
}

func (m *RequestsBlocked) appendPayload(b []byte, v Version) []byte {
	return AppendVarint(b, v, m.MaxRequestID)
}

func (m *MaxRequestID) decodePayload(p *parser)    { m.RequestID = p.varint() }
func (m *RequestsBlocked) decodePayload(p *parser) { m.MaxRequestID = p.varint() }
