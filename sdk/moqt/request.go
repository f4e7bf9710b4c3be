package moqt

// Request messages open a request: in draft 16 on the control stream, told
// apart by RequestID; in draft 17 each first on a bidirectional stream of its
// own, where RequiredRequestIDDelta (draft 17 only) names a request this one
// depends on. Response messages carry RequestID in draft 16 only: in draft 17
// the stream says which request they answer, and RequestID decodes as 0.

// Subscribe asks the peer to send a track's objects.
type Subscribe struct {
	RequestID              uint64
	RequiredRequestIDDelta uint64 // draft 17
	Namespace              Namespace
	TrackName              string
	Params                 Params
}

// SubscribeOK accepts a Subscribe; objects of the track arrive under TrackAlias.
type SubscribeOK struct {
	RequestID  uint64 // draft 16
	TrackAlias uint64
	Params     Params
	Properties Params // Track Extensions (16) / Track Properties (17), to the message end
}

// Publish offers a track the sender will push without being asked (the flow
// MediaMTX's publisher uses); its objects use TrackAlias.
type Publish struct {
	RequestID              uint64
	RequiredRequestIDDelta uint64 // draft 17
	Namespace              Namespace
	TrackName              string
	TrackAlias             uint64
	Params                 Params
	Properties             Params
}

// PublishOK accepts a Publish in drafts 16 and 17; draft 18+ answer PUBLISH
// with RequestOK.
type PublishOK struct {
	RequestID uint64 // draft 16
	Params    Params
}

// PublishNamespace (formerly ANNOUNCE) says the sender has tracks under
// Namespace, the flow moq-dev's publishers use: the receiver then subscribes.
type PublishNamespace struct {
	RequestID              uint64
	RequiredRequestIDDelta uint64 // draft 17
	Namespace              Namespace
	Params                 Params
}

// RequestOK accepts a PublishNamespace (and other non-subscription requests;
// in draft 18+ also a Publish).
type RequestOK struct {
	RequestID  uint64 // draft 16
	Params     Params
	Properties Params // draft 18+: track properties, to the message end
}

// RequestError rejects any request. RetryInterval is milliseconds plus one; 0
// means do not retry.
type RequestError struct {
	RequestID     uint64 // draft 16
	Code          ErrorCode
	RetryInterval uint64
	Reason        string
	// Redirect (draft 18+) is on the wire exactly when Code is ReqRedirect;
	// encoding a ReqRedirect without one writes an empty Redirect (same URI,
	// same track).
	Redirect *Redirect
}

// Redirect tells the requester where to retry (draft 19 §"Redirect"): an empty
// ConnectURI means this session; an empty Namespace and TrackName mean the
// same track.
type Redirect struct {
	ConnectURI string
	Namespace  Namespace
	TrackName  string
}

// PublishDone ends a subscription from the publisher's side. StreamCount is
// how many data streams it opened for it.
type PublishDone struct {
	RequestID   uint64 // draft 16
	Status      ErrorCode
	StreamCount uint64
	Reason      string
}

// Unsubscribe (draft 16) ends a subscription from the subscriber's side; in
// draft 17 the subscriber resets the request stream instead.
type Unsubscribe struct {
	RequestID uint64
}

// PublishNamespaceDone (draft 16) withdraws a PublishNamespace; in draft 17
// the publisher closes the request stream instead.
type PublishNamespaceDone struct {
	RequestID uint64
}

// PublishNamespaceCancel (draft 16) is the receiver withdrawing its interest
// in a namespace it accepted.
type PublishNamespaceCancel struct {
	RequestID uint64
	Code      ErrorCode
	Reason    string
}

func appendRequestHead(b []byte, v Version, id, required uint64) []byte {
	b = AppendVarint(b, v, id)
	if v.requiredRequestID() {
		b = AppendVarint(b, v, required)
	}
	return b
}

func (p *parser) requestHead() (id, required uint64) {
	id = p.varint()
	if p.v.requiredRequestID() {
		required = p.varint()
		if p.err == nil && (required > id/2) {
			p.fail(&ProtocolError{Code: CodeInvalidRequiredRequestID, Msg: "required request id delta exceeds the request id"})
		}
	}
	return id, required
}

func appendResponseID(b []byte, v Version, id uint64) []byte {
	if v.requestStreams() {
		return b
	}
	return AppendVarint(b, v, id)
}

func (p *parser) responseID() uint64 {
	if p.v.requestStreams() {
		return 0
	}
	return p.varint()
}

func (p *parser) reason() string { return string(p.bytes(MaxReasonPhrase, "reason phrase")) }

// Type implements Message.
func (*Subscribe) Type() uint64 { return TypeSubscribe }

// Append implements Message.
func (m *Subscribe) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *Subscribe) appendPayload(b []byte, v Version) []byte {
	b = appendRequestHead(b, v, m.RequestID, m.RequiredRequestIDDelta)
	b = appendNamespace(b, v, m.Namespace)
	b = appendBytes(b, v, []byte(m.TrackName))
	return appendMessageParams(b, v, m.Params)
}

func (m *Subscribe) decodePayload(p *parser) {
	m.RequestID, m.RequiredRequestIDDelta = p.requestHead()
	m.Namespace, m.TrackName = p.fullTrackName()
	m.Params = p.messageParams()
}

// Type implements Message.
func (*SubscribeOK) Type() uint64 { return TypeSubscribeOK }

// Append implements Message.
func (m *SubscribeOK) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *SubscribeOK) appendPayload(b []byte, v Version) []byte {
	b = appendResponseID(b, v, m.RequestID)
	b = AppendVarint(b, v, m.TrackAlias)
	b = appendMessageParams(b, v, m.Params)
	return appendKVPs(b, v, m.Properties)
}

func (m *SubscribeOK) decodePayload(p *parser) {
	m.RequestID = p.responseID()
	m.TrackAlias = p.varint()
	m.Params = p.messageParams()
	m.Properties = p.kvpsToEnd()
}

// Type implements Message.
func (*Publish) Type() uint64 { return TypePublish }

// Append implements Message.
func (m *Publish) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *Publish) appendPayload(b []byte, v Version) []byte {
	b = appendRequestHead(b, v, m.RequestID, m.RequiredRequestIDDelta)
	b = appendNamespace(b, v, m.Namespace)
	b = appendBytes(b, v, []byte(m.TrackName))
	b = AppendVarint(b, v, m.TrackAlias)
	b = appendMessageParams(b, v, m.Params)
	return appendKVPs(b, v, m.Properties)
}

func (m *Publish) decodePayload(p *parser) {
	m.RequestID, m.RequiredRequestIDDelta = p.requestHead()
	m.Namespace, m.TrackName = p.fullTrackName()
	m.TrackAlias = p.varint()
	m.Params = p.messageParams()
	m.Properties = p.kvpsToEnd()
}

// Type implements Message.
func (*PublishOK) Type() uint64 { return TypePublishOK }

// Append implements Message.
func (m *PublishOK) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *PublishOK) appendPayload(b []byte, v Version) []byte {
	b = appendResponseID(b, v, m.RequestID)
	return appendMessageParams(b, v, m.Params)
}

func (m *PublishOK) decodePayload(p *parser) {
	m.RequestID = p.responseID()
	m.Params = p.messageParams()
}

// Type implements Message.
func (*PublishNamespace) Type() uint64 { return TypePublishNamespace }

// Append implements Message.
func (m *PublishNamespace) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *PublishNamespace) appendPayload(b []byte, v Version) []byte {
	b = appendRequestHead(b, v, m.RequestID, m.RequiredRequestIDDelta)
	b = appendNamespace(b, v, m.Namespace)
	return appendMessageParams(b, v, m.Params)
}

func (m *PublishNamespace) decodePayload(p *parser) {
	m.RequestID, m.RequiredRequestIDDelta = p.requestHead()
	m.Namespace = p.namespace()
	m.Params = p.messageParams()
}

// Type implements Message.
func (*RequestOK) Type() uint64 { return TypeRequestOK }

// Append implements Message.
func (m *RequestOK) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *RequestOK) appendPayload(b []byte, v Version) []byte {
	b = appendResponseID(b, v, m.RequestID)
	b = appendMessageParams(b, v, m.Params)
	if v.requestOKAlias() {
		b = appendKVPs(b, v, m.Properties)
	}
	return b
}

func (m *RequestOK) decodePayload(p *parser) {
	m.RequestID = p.responseID()
	m.Params = p.messageParams()
	if p.v.requestOKAlias() {
		m.Properties = p.kvpsToEnd()
	}
}

// Type implements Message.
func (*RequestError) Type() uint64 { return TypeRequestError }

// Append implements Message.
func (m *RequestError) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *RequestError) appendPayload(b []byte, v Version) []byte {
	b = appendResponseID(b, v, m.RequestID)
	b = AppendVarint(b, v, uint64(m.Code))
	b = AppendVarint(b, v, m.RetryInterval)
	b = appendBytes(b, v, []byte(m.Reason))
	if v.requestOKAlias() && m.Code == ReqRedirect {
		r := m.Redirect
		if r == nil {
			r = &Redirect{}
		}
		b = appendBytes(b, v, []byte(r.ConnectURI))
		b = appendNamespace(b, v, r.Namespace)
		b = appendBytes(b, v, []byte(r.TrackName))
	}
	return b
}

func (m *RequestError) decodePayload(p *parser) {
	m.RequestID = p.responseID()
	m.Code = ErrorCode(p.varint())
	m.RetryInterval = p.varint()
	m.Reason = p.reason()
	if p.v.requestOKAlias() && m.Code == ReqRedirect {
		r := &Redirect{ConnectURI: string(p.bytes(MaxGoAwayURI, "redirect URI"))}
		r.Namespace, r.TrackName = p.fullTrackName()
		m.Redirect = r
	}
}

// Type implements Message.
func (*PublishDone) Type() uint64 { return TypePublishDone }

// Append implements Message.
func (m *PublishDone) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *PublishDone) appendPayload(b []byte, v Version) []byte {
	b = appendResponseID(b, v, m.RequestID)
	b = AppendVarint(b, v, uint64(m.Status))
	b = AppendVarint(b, v, m.StreamCount)
	return appendBytes(b, v, []byte(m.Reason))
}

func (m *PublishDone) decodePayload(p *parser) {
	m.RequestID = p.responseID()
	m.Status = ErrorCode(p.varint())
	m.StreamCount = p.varint()
	m.Reason = p.reason()
}

// Type implements Message.
func (*Unsubscribe) Type() uint64 { return TypeUnsubscribe }

// Append implements Message.
func (m *Unsubscribe) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *Unsubscribe) appendPayload(b []byte, v Version) []byte {
	return AppendVarint(b, v, m.RequestID)
}

func (m *Unsubscribe) decodePayload(p *parser) { m.RequestID = p.varint() }

// Type implements Message.
func (*PublishNamespaceDone) Type() uint64 { return TypePublishNamespaceDone }

// Append implements Message.
func (m *PublishNamespaceDone) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *PublishNamespaceDone) appendPayload(b []byte, v Version) []byte {
	return AppendVarint(b, v, m.RequestID)
}

func (m *PublishNamespaceDone) decodePayload(p *parser) { m.RequestID = p.varint() }

// Type implements Message.
func (*PublishNamespaceCancel) Type() uint64 { return TypePublishNamespaceCancel }

// Append implements Message.
func (m *PublishNamespaceCancel) Append(b []byte, v Version) []byte { return appendFramed(b, v, m) }

func (m *PublishNamespaceCancel) appendPayload(b []byte, v Version) []byte {
	b = AppendVarint(b, v, m.RequestID)
	b = AppendVarint(b, v, uint64(m.Code))
	return appendBytes(b, v, []byte(m.Reason))
}

func (m *PublishNamespaceCancel) decodePayload(p *parser) {
	m.RequestID = p.varint()
	m.Code = ErrorCode(p.varint())
	m.Reason = p.reason()
}
