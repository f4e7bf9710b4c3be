package moqt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// Wire vectors, each built by hand from the layout its source gives.
var controlVectors = []struct {
	name   string
	v      Version
	hex    string
	msg    Message
	source string
}{
	{
		name: "client setup sent by @moq/net 0.1.9 for moqt-16",
		v:    Draft16,
		// type 0x20, length 19, 2 params: delta 2 MAX_REQUEST_ID=42069 (4-byte
		// varint), delta 5 MOQT_IMPLEMENTATION "moq-lite-js".
		hex: "20" + "0013" + "02" + "02" + "8000a455" + "05" + "0b" + hexOf("moq-lite-js"),
		msg: &ClientSetup{Params: Params{
			{Type: SetupMaxRequestID, Value: 42069},
			{Type: SetupImplementation, Bytes: []byte("moq-lite-js")},
		}},
		source: "@moq/net 0.1.9 connection/connect.js + ietf/setup.js, parameters.js; draft-16 §9.3",
	},
	{
		name: "setup sent by @moq/net 0.1.9 for moqt-17",
		v:    Draft17,
		// 0x2F00 as a 2-byte leading-ones varint (0xaf00) doubles as the
		// control stream type; length 13; option delta 7 "moq-lite-js".
		hex:    "af00" + "000d" + "07" + "0b" + hexOf("moq-lite-js"),
		msg:    &Setup{Params: Params{{Type: SetupImplementation, Bytes: []byte("moq-lite-js")}}},
		source: "@moq/net 0.1.9 connection/handshake.js; draft-17 §9.4 SETUP",
	},
	{
		name:   "publish namespace cam1.hang, draft 16",
		v:      Draft16,
		hex:    "06" + "000d" + "00" + "01" + "09" + hexOf("cam1.hang") + "00",
		msg:    &PublishNamespace{RequestID: 0, Namespace: Namespace{"cam1.hang"}},
		source: "@moq/net 0.1.9 ietf/publish_namespace.js; draft-16 PUBLISH_NAMESPACE",
	},
	{
		name:   "publish namespace cam1.hang, draft 17 (required request id delta 0)",
		v:      Draft17,
		hex:    "06" + "000e" + "00" + "00" + "01" + "09" + hexOf("cam1.hang") + "00",
		msg:    &PublishNamespace{RequestID: 0, Namespace: Namespace{"cam1.hang"}},
		source: "@moq/net 0.1.9 ietf/publish_namespace.js; draft-17 PUBLISH_NAMESPACE",
	},
	{
		name: "subscribe catalog.json, draft 16",
		v:    Draft16,
		hex: "03" + "001c" + "01" + "01" + "09" + hexOf("cam1.hang") + "0c" + hexOf("catalog.json") +
			"01" + "20" + "00",
		msg: &Subscribe{RequestID: 1, Namespace: Namespace{"cam1.hang"}, TrackName: "catalog.json",
			Params: Params{{Type: ParamSubscriberPriority, Value: 0}}},
		source: "draft-16 SUBSCRIBE; parameter 0x20 SUBSCRIBER_PRIORITY (even: varint)",
	},
	{
		name:   "subscribe ok, draft 17: no request id, group order as uint8",
		v:      Draft17,
		hex:    "04" + "0004" + "07" + "01" + "22" + "01",
		msg:    &SubscribeOK{TrackAlias: 7, Params: Params{{Type: ParamGroupOrder, Value: 1}}},
		source: "draft-17 SUBSCRIBE_OK and §Message Parameters (GROUP_ORDER is a uint8)",
	},
	{
		name:   "request error, draft 16",
		v:      Draft16,
		hex:    "05" + "0006" + "02" + "10" + "00" + "02" + hexOf("no"),
		msg:    &RequestError{RequestID: 2, Code: ReqDoesNotExist, Reason: "no"},
		source: "draft-16 REQUEST_ERROR",
	},
	{
		name: "publish as MediaMTX lays it out (no Required Request ID Delta), draft 19",
		v:    Draft19,
		// request id 0, namespace ("live"), track "video", alias 1, 0 params.
		hex:    "1d" + "000f" + "00" + "01" + "04" + hexOf("live") + "05" + hexOf("video") + "01" + "00",
		msg:    &Publish{Namespace: Namespace{"live"}, TrackName: "video", TrackAlias: 1},
		source: "mediamtx controlmessage/publish.go; draft-19 PUBLISH",
	},
	{
		name:   "request ok answering PUBLISH, draft 19: no params, no properties",
		v:      Draft19,
		hex:    "07" + "0001" + "00",
		msg:    &RequestOK{},
		source: "mediamtx servers/moq/session.go onPublish* (RequestOk for 18+); draft-19 REQUEST_OK",
	},
	{
		name:   "max request id, draft 16",
		v:      Draft16,
		hex:    "15" + "0001" + "20",
		msg:    &MaxRequestID{RequestID: 32},
		source: "draft-16 MAX_REQUEST_ID",
	},
}

func hexOf(s string) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(digits[s[i]>>4])
		b.WriteByte(digits[s[i]&15])
	}
	return b.String()
}

func TestControlVectorsEncode(t *testing.T) {
	for _, tc := range controlVectors {
		got := tc.msg.Append(nil, tc.v)
		if want := unhex(t, tc.hex); !bytes.Equal(got, want) {
			t.Errorf("%s (%s):\n got %x\nwant %x", tc.name, tc.source, got, want)
		}
	}
}

func TestControlVectorsDecode(t *testing.T) {
	for _, tc := range controlVectors {
		got, err := ReadMessage(bytes.NewReader(unhex(t, tc.hex)), tc.v, 0)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(normalize(got), normalize(tc.msg)) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.name, got, tc.msg)
		}
	}
}

// normalize maps empty slices to nil so DeepEqual compares content.
func normalize(m Message) Message {
	rv := reflect.ValueOf(m).Elem()
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if f.Kind() == reflect.Slice && f.Len() == 0 {
			f.Set(reflect.Zero(f.Type()))
		}
		if f.Type() == reflect.TypeOf(Params(nil)) {
			for j := 0; j < f.Len(); j++ {
				p := f.Index(j)
				if b := p.FieldByName("Bytes"); b.Len() == 0 {
					b.Set(reflect.Zero(b.Type()))
				}
			}
		}
	}
	return m
}

// sampleMessages has one of every message each version defines, with every
// field set to something other than its zero value.
func sampleMessages(v Version) []Message {
	ns := Namespace{"live", "cam1.hang"}
	params := Params{
		{Type: ParamDeliveryTimeout, Value: 5000},
		{Type: ParamAuthToken, Bytes: []byte("tok")},
		LargestObjectParam(v, Location{Group: 9, Object: 3}),
		{Type: ParamForward, Value: 1},
		{Type: ParamGroupOrder, Value: 2},
	}
	props := Params{{Type: 0x0e, Value: 128}, {Type: 0x4d, Bytes: []byte("trace")}}
	id16 := func(x uint64) uint64 {
		if v.requestStreams() {
			return 0
		}
		return x
	}
	ms := []Message{
		&GoAway{NewSessionURI: "moqt://other:4443/x", Timeout: map[bool]uint64{true: 3000}[v.requestStreams()]},
		&Subscribe{RequestID: 4, RequiredRequestIDDelta: map[bool]uint64{true: 1}[v.requiredRequestID()],
			Namespace: ns, TrackName: "video/hd", Params: params},
		&SubscribeOK{RequestID: id16(4), TrackAlias: 4, Params: params, Properties: props},
		&Publish{RequestID: 6, Namespace: ns, TrackName: "audio/data", TrackAlias: 11, Params: params, Properties: props},
		&PublishNamespace{RequestID: 8, Namespace: ns, Params: params[1:2]},
		&RequestError{RequestID: id16(8), Code: ReqUninterested, RetryInterval: 1001, Reason: "not now"},
		&PublishDone{RequestID: id16(4), Status: DoneTrackEnded, StreamCount: 12, Reason: "bye"},
	}
	if v.requestOKAlias() {
		ms = append(ms,
			&RequestOK{Params: params[:1], Properties: props},
			&RequestError{Code: ReqRedirect, RetryInterval: 1, Reason: "elsewhere",
				Redirect: &Redirect{Namespace: Namespace{"b"}, TrackName: "t"}},
			&Subscribe{RequestID: 10, Namespace: ns, TrackName: "x", Params: Params{
				{Type: ParamPriorityFilter, Bytes: []byte{0, 1, 5}},
				{Type: ParamTrackNamespacePrefix, Bytes: appendNamespace(nil, v, Namespace{"live"})},
			}},
		)
	} else {
		ms = append(ms, &PublishOK{RequestID: id16(6), Params: params}, &RequestOK{RequestID: id16(8), Params: params[:1]})
	}
	if v.requestStreams() {
		return append(ms, &Setup{Params: Params{{Type: SetupPath, Bytes: []byte("/moq")}, {Type: SetupImplementation, Bytes: []byte("sluice")}}})
	}
	return append(ms,
		&ClientSetup{Params: Params{{Type: SetupPath, Bytes: []byte("/moq")}, {Type: SetupMaxRequestID, Value: 100}}},
		&ServerSetup{Params: Params{{Type: SetupMaxRequestID, Value: 64}}},
		&MaxRequestID{RequestID: 200},
		&RequestsBlocked{MaxRequestID: 100},
		&Unsubscribe{RequestID: 4},
		&PublishNamespaceDone{RequestID: 8},
		&PublishNamespaceCancel{RequestID: 8, Code: ReqInternalError, Reason: "gone"},
	)
}

func TestEveryMessageRoundTripsInEveryVersion(t *testing.T) {
	for _, v := range Supported {
		var stream []byte
		ms := sampleMessages(v)
		for _, m := range ms {
			stream = m.Append(stream, v)
		}
		r := bytes.NewReader(stream)
		for _, want := range ms {
			got, err := ReadMessage(r, v, 0)
			if err != nil {
				t.Fatalf("%s %T: %v", v, want, err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Errorf("%s:\n got %#v\nwant %#v", v, got, want)
			}
		}
		if _, err := ReadMessage(r, v, 0); err != io.EOF {
			t.Errorf("%s: after the last message: %v, want io.EOF", v, err)
		}
		// ParseMessage agrees with ReadMessage on the same bytes.
		for b := stream; len(b) > 0; {
			_, n, err := ParseMessage(b, v)
			if err != nil {
				t.Fatalf("%s ParseMessage: %v", v, err)
			}
			b = b[n:]
		}
	}
}

func TestMessagesOutsideTheirDraftAreUnknown(t *testing.T) {
	cases := []struct {
		m Message
		v Version
	}{
		{&ClientSetup{}, Draft17}, {&MaxRequestID{}, Draft17}, {&Unsubscribe{}, Draft19},
		{&PublishNamespaceDone{}, Draft17}, {&PublishOK{}, Draft19},
	}
	for _, tc := range cases {
		b := tc.m.Append(nil, tc.v)
		_, err := ReadMessage(bytes.NewReader(b), tc.v, 0)
		var unknown *UnknownMessageError
		if !errors.As(err, &unknown) || unknown.Type != tc.m.Type() {
			t.Errorf("%T in %s: %v, want UnknownMessageError", tc.m, tc.v, err)
		}
		if CodeOf(err) != CodeProtocolViolation {
			t.Errorf("%T: code %v, want PROTOCOL_VIOLATION", tc.m, CodeOf(err))
		}
	}
	if _, err := ReadMessage(bytes.NewReader((&Setup{}).Append(nil, Draft16)), Draft16, 0); CodeOf(err) != CodeProtocolViolation {
		t.Errorf("SETUP in draft 16: %v", err)
	}
}

func TestMalformedControlMessages(t *testing.T) {
	ns33 := make(Namespace, 33)
	for i := range ns33 {
		ns33[i] = "x"
	}
	long := strings.Repeat("n", 4000)
	cases := []struct {
		name string
		v    Version
		b    []byte
		code ErrorCode
	}{
		{"length longer than payload fields", Draft16, unhex(t, "15000220"+"00"), CodeProtocolViolation},
		{"33 namespace fields", Draft16, (&PublishNamespace{Namespace: ns33}).Append(nil, Draft16), CodeProtocolViolation},
		{"empty namespace in draft 16", Draft16, (&PublishNamespace{}).Append(nil, Draft16), CodeProtocolViolation},
		{"empty namespace field", Draft17, (&PublishNamespace{Namespace: Namespace{"a", ""}}).Append(nil, Draft17), CodeProtocolViolation},
		{"full track name over 4096", Draft16, (&Subscribe{Namespace: Namespace{long}, TrackName: long[:200]}).Append(nil, Draft16), CodeProtocolViolation},
		{"repeated parameter", Draft16, unhex(t, "1e0006"+"00"+"02"+"0201"+"0002"), CodeProtocolViolation},
		{"unknown draft 17 parameter", Draft17, unhex(t, "1e0003"+"01"+"4001"), CodeProtocolViolation},
		{"required request id beyond request id", Draft17, (&Subscribe{RequestID: 2, RequiredRequestIDDelta: 2, Namespace: Namespace{"a"}}).Append(nil, Draft17), CodeInvalidRequiredRequestID},
		{"reason phrase over 1024", Draft16, (&RequestError{Reason: strings.Repeat("r", 1025)}).Append(nil, Draft16), CodeProtocolViolation},
		{"parameter count over the bound", Draft16, unhex(t, "1e0002"+"00"+"41"), CodeProtocolViolation},
	}
	for _, tc := range cases {
		_, err := ReadMessage(bytes.NewReader(tc.b), tc.v, 0)
		if err == nil || CodeOf(err) != tc.code {
			t.Errorf("%s: err %v (code %v), want code %v", tc.name, err, CodeOf(err), tc.code)
		}
	}
}

func TestReadMessageLimitAndTruncation(t *testing.T) {
	b := (&RequestError{Reason: strings.Repeat("r", 200)}).Append(nil, Draft16)
	if _, err := ReadMessage(bytes.NewReader(b), Draft16, 100); CodeOf(err) != CodeProtocolViolation {
		t.Errorf("over limit: %v", err)
	}
	for cut := 1; cut < len(b); cut += 37 {
		_, err := ReadMessage(bytes.NewReader(b[:cut]), Draft16, 0)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
		if _, _, err := ParseMessage(b[:cut], Draft16); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("ParseMessage cut at %d: %v", cut, err)
		}
	}
}

func TestNegotiatePrefersNewestCommonDraft(t *testing.T) {
	// @moq/net 0.1.9's WebTransport protocols, in its order.
	offered := []string{"moq-lite-04", "moq-lite-03", "moql", "moqt-19", "moqt-18", "moqt-17", "moqt-16", "moqt-15"}
	if v, ok := Negotiate(offered); !ok || v != Draft19 {
		t.Errorf("got %v %v, want draft-19", v, ok)
	}
	if v, ok := Negotiate([]string{"moqt-18", "moqt-17"}); !ok || v != Draft17 {
		t.Errorf("got %v %v, want draft-17", v, ok)
	}
	if v, ok := Negotiate([]string{"moqt-16", "moqt-19"}); !ok || v != Draft19 {
		t.Errorf("got %v, want draft-19: the server's preference decides", v)
	}
	if v, ok := Negotiate([]string{"moqt-15", "moqt-16"}); !ok || v != Draft16 {
		t.Errorf("got %v, want draft-16", v)
	}
	if _, ok := Negotiate([]string{"moq-lite-04", "moqt-15"}); ok {
		t.Error("negotiated a version from an offer without 16 or 17")
	}
	if v, ok := VersionFromALPN("moqt-16"); !ok || v != Draft16 || v.ALPN() != "moqt-16" {
		t.Errorf("moqt-16 → %v %v", v, ok)
	}
}

func fuzzControl(f *testing.F, v Version) {
	for _, tc := range controlVectors {
		if tc.v == v {
			f.Add(unhex(f, tc.hex))
		}
	}
	for _, m := range sampleMessages(v) {
		f.Add(m.Append(nil, v))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMessage(bytes.NewReader(b), v, 0)
		pm, n, perr := ParseMessage(b, v)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ReadMessage err %v but ParseMessage err %v", err, perr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(normalize(pm), normalize(m)) || n > len(b) {
			t.Fatalf("ParseMessage %#v (%d bytes) differs from ReadMessage %#v", pm, n, m)
		}
		if ps, ok := paramsOf(m); ok {
			if _, _, err := ps.LargestObject(v); err != nil && CodeOf(err) != CodeProtocolViolation {
				t.Fatalf("LargestObject: %v", err)
			}
		}
		// Whatever decodes re-encodes to something that decodes to the same.
		again, err := ReadMessage(bytes.NewReader(m.Append(nil, v)), v, 0)
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(m)) {
			t.Fatalf("round trip changed\n%#v\n%#v", m, again)
		}
	})
}

// paramsOf returns a message's Params field, if it has one.
func paramsOf(m Message) (Params, bool) {
	f := reflect.ValueOf(m).Elem().FieldByName("Params")
	if !f.IsValid() {
		return nil, false
	}
	return f.Interface().(Params), true
}

func FuzzControlMessage16(f *testing.F) { fuzzControl(f, Draft16) }

func FuzzControlMessage17(f *testing.F) { fuzzControl(f, Draft17) }

func FuzzControlMessage19(f *testing.F) { fuzzControl(f, Draft19) }
