package moqt

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// readSubgroup reads a whole subgroup stream: type, header, objects to EOF.
func readSubgroup(b []byte, v Version, max int) (SubgroupHeader, []Object, error) {
	r := bytes.NewReader(b)
	t, err := ReadVarint(r, v)
	if err != nil {
		return SubgroupHeader{}, nil, err
	}
	s, err := NewSubgroupReader(r, v, t, max)
	if err != nil {
		return SubgroupHeader{}, nil, err
	}
	var objs []Object
	for {
		o, err := s.ReadObject()
		if err == io.EOF {
			return s.Header, objs, nil
		}
		if err != nil {
			return s.Header, objs, err
		}
		objs = append(objs, o)
	}
}

func TestSubgroupVectors(t *testing.T) {
	cases := []struct {
		name, source string
		v            Version
		hex          string
		header       SubgroupHeader
		objects      []Object
	}{
		{
			name:   "draft 17 §Examples: type 0x14, explicit subgroup id, priority",
			source: "draft-ietf-moq-transport-17 §Data Streams, Examples",
			v:      Draft17,
			hex:    "14" + "02" + "00" + "00" + "00" + "00" + "04" + hexOf("abcd") + "00" + "04" + hexOf("efgh"),
			header: SubgroupHeader{TrackAlias: 2, IDMode: SubgroupExplicit, HasPriority: true},
			objects: []Object{
				{ID: 0, Payload: []byte("abcd")},
				{ID: 1, Payload: []byte("efgh")},
			},
		},
		{
			name: "what @moq/net 0.1.9 sends: type 0x18 (end of group, priority 0), " +
				"track alias = the SUBSCRIBE's request id, object id deltas 0",
			source: "@moq/net 0.1.9 ietf/publisher.js #runGroup and ietf/object.js",
			v:      Draft16,
			hex:    "18" + "02" + "05" + "00" + "00" + "03" + "616263" + "00" + "02" + "6465",
			header: SubgroupHeader{TrackAlias: 2, GroupID: 5, HasPriority: true, EndOfGroup: true},
			objects: []Object{
				{ID: 0, Payload: []byte("abc")},
				{ID: 1, Payload: []byte("de")},
			},
		},
		{
			name:    "@moq/net 0.1.9 on draft 18+: the same with FIRST_OBJECT (0x40), type 0x58",
			source:  "@moq/net 0.1.9 ietf/object.js hasFirstObjectBit; draft-19 §Subgroup Header",
			v:       Draft19,
			hex:     "58" + "02" + "05" + "00" + "00" + "03" + "616263",
			header:  SubgroupHeader{TrackAlias: 2, GroupID: 5, HasPriority: true, EndOfGroup: true, FirstObject: true},
			objects: []Object{{ID: 0, Payload: []byte("abc")}},
		},
	}
	for _, tc := range cases {
		h, objs, err := readSubgroup(unhex(t, tc.hex), tc.v, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h != tc.header || !reflect.DeepEqual(objs, tc.objects) {
			t.Errorf("%s:\n got %+v %+v\nwant %+v %+v", tc.name, h, objs, tc.header, tc.objects)
		}
		w := SubgroupWriter{V: tc.v, Header: tc.header}
		b := w.AppendHeader(nil)
		for _, o := range tc.objects {
			if b, err = w.AppendObject(b, o); err != nil {
				t.Fatal(err)
			}
		}
		if want := unhex(t, tc.hex); !bytes.Equal(b, want) {
			t.Errorf("%s: encoded %x, want %x", tc.name, b, want)
		}
	}
}

func TestSubgroupRoundTripAllHeaderForms(t *testing.T) {
	for _, v := range Supported {
		for _, mode := range []SubgroupIDMode{SubgroupZero, SubgroupFirstObject, SubgroupExplicit} {
			for bits := range 8 {
				h := SubgroupHeader{TrackAlias: 300, GroupID: 1 << 40, IDMode: mode,
					HasPriority: bits&1 != 0, Priority: 7, EndOfGroup: bits&2 != 0, Extensions: bits&4 != 0,
					FirstObject: v == Draft19 && bits&1 != 0}
				if mode == SubgroupExplicit {
					h.SubgroupID = 9
				}
				if !h.HasPriority {
					h.Priority = 0
				}
				objs := []Object{{ID: 5, Payload: []byte("k")}, {ID: 6}, {ID: 90, Payload: bytes.Repeat([]byte{1}, 300)}}
				if h.Extensions {
					objs[0].Extensions = Params{{Type: 0x3c, Value: 2}}
				}
				objs = append(objs, Object{ID: 91, Status: StatusEndOfGroup})
				w := SubgroupWriter{V: v, Header: h}
				b := w.AppendHeader(nil)
				var err error
				for _, o := range objs {
					if b, err = w.AppendObject(b, o); err != nil {
						t.Fatal(err)
					}
				}
				gotH, got, err := readSubgroup(b, v, 1<<20)
				if mode == SubgroupFirstObject {
					h.SubgroupID = 5
				}
				if err != nil || gotH != h || !reflect.DeepEqual(got, objs) {
					t.Fatalf("%s %+v: %v\n got %+v\nwant %+v", v, h, err, got, objs)
				}
			}
		}
	}
}

func TestSubgroupRejects(t *testing.T) {
	if IsSubgroupStream(0x16, Draft16) || IsSubgroupStream(0x3f, Draft17) || IsSubgroupStream(0x50, Draft17) || !IsSubgroupStream(0x3d, Draft16) {
		t.Error("IsSubgroupStream disagrees with draft 16/17's valid ranges")
	}
	// Draft 19 adds FIRST_OBJECT (0x40): 0x50..0x5D and 0x70..0x7D.
	if !IsSubgroupStream(0x58, Draft19) || !IsSubgroupStream(0x7d, Draft19) || IsSubgroupStream(0x56, Draft19) || IsSubgroupStream(0x90, Draft19) {
		t.Error("IsSubgroupStream disagrees with draft 19's valid ranges")
	}
	cases := []struct {
		name string
		hex  string
		want func(error) bool
	}{
		{"reserved id mode", "16" + "00" + "00", isViolation},
		{"unknown object status", "10" + "00" + "00" + "00" + "00" + "00" + "07", isViolation},
		{"object after end of group", "10" + "00" + "00" + "00" + "00" + "00" + "03" + "00" + "01" + "61", isViolation},
		{"payload over the limit", "10" + "00" + "00" + "00" + "00" + "4400", func(err error) bool { return errors.Is(err, ErrObjectTooLarge) }},
		{"stream ends inside a payload", "10" + "00" + "00" + "00" + "00" + "05" + "6162", func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
	}
	for _, tc := range cases {
		_, _, err := readSubgroup(unhex(t, tc.hex), Draft16, 1000)
		if !tc.want(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	w := SubgroupWriter{V: Draft16}
	b, _ := w.AppendObject(nil, Object{ID: 3, Payload: []byte("a")})
	if _, err := w.AppendObject(b, Object{ID: 3, Payload: []byte("a")}); err == nil {
		t.Error("writer accepted a repeated object id")
	}
}

func isViolation(err error) bool { return err != nil && CodeOf(err) == CodeProtocolViolation }

func TestDatagramRoundTripAndRejects(t *testing.T) {
	for _, v := range Supported {
		for _, d := range []Datagram{
			{TrackAlias: 1, GroupID: 2, Object: Object{ID: 0, Payload: []byte("x")}},
			{TrackAlias: 1, GroupID: 2, Object: Object{ID: 3, Payload: []byte("xy")}, HasPriority: true, Priority: 9, EndOfGroup: true},
			{TrackAlias: 1, GroupID: 2, Object: Object{ID: 4, Extensions: Params{{Type: 2, Value: 1}}, Payload: []byte("z")}},
			{TrackAlias: 1, GroupID: 2, Object: Object{ID: 5, Status: StatusEndOfTrack}},
		} {
			got, err := ParseDatagram(d.Append(nil, v), v)
			if err != nil || !reflect.DeepEqual(got, d) {
				t.Errorf("%s: %+v → %+v, %v", v, d, got, err)
			}
		}
	}
	for _, h := range []string{"22000000", "40", "0100000000" + "00", "2000000007"} {
		if _, err := ParseDatagram(unhex(t, h), Draft16); !isViolation(err) {
			t.Errorf("datagram %s: %v, want PROTOCOL_VIOLATION", h, err)
		}
	}
}

func FuzzSubgroup(f *testing.F) {
	f.Add(unhex(f, "14020000000004"+hexOf("abcd")+"0004"+hexOf("efgh")), uint8(1))
	f.Add(unhex(f, "18020500000361626300026465"), uint8(2))
	f.Add(unhex(f, "11000000000002"+"3c02"+"0161"+"0000"+"0003"), uint8(0))
	f.Add(unhex(f, "58020500000361626300026465"), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, pick uint8) {
		v := Supported[int(pick)%len(Supported)]
		h, objs, err := readSubgroup(b, v, 1<<16)
		if err != nil {
			return
		}
		// A stream that decodes re-encodes, object by object, to the same objects.
		w := SubgroupWriter{V: v, Header: h}
		if h.IDMode == SubgroupFirstObject {
			w.Header.SubgroupID = 0
		}
		out := w.AppendHeader(nil)
		for _, o := range objs {
			if out, err = w.AppendObject(out, o); err != nil {
				t.Fatalf("decoded object %+v does not re-encode: %v", o, err)
			}
		}
		h2, objs2, err := readSubgroup(out, v, 1<<16)
		if err != nil || h2 != h || !reflect.DeepEqual(normalizeObjects(objs2), normalizeObjects(objs)) {
			t.Fatalf("round trip: %v\n%+v %+v\n%+v %+v", err, h, objs, h2, objs2)
		}
	})
}

func normalizeObjects(os []Object) []Object {
	for i := range os {
		if len(os[i].Extensions) == 0 {
			os[i].Extensions = nil
		}
		for j := range os[i].Extensions {
			if len(os[i].Extensions[j].Bytes) == 0 {
				os[i].Extensions[j].Bytes = nil
			}
		}
	}
	return os
}

func FuzzDatagram(f *testing.F) {
	f.Add([]byte{0x04, 0x01, 0x02, 'x'}, uint8(2))
	f.Add(unhex(f, "0001020309"+"7879"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, pick uint8) {
		v := Supported[int(pick)%len(Supported)]
		d, err := ParseDatagram(b, v)
		if err != nil {
			return
		}
		again, err := ParseDatagram(d.Append(nil, v), v)
		if err != nil {
			t.Fatalf("%+v re-encodes to something invalid: %v", d, err)
		}
		if again.TrackAlias != d.TrackAlias || again.GroupID != d.GroupID || again.Object.ID != d.Object.ID ||
			!bytes.Equal(again.Object.Payload, d.Object.Payload) || again.Object.Status != d.Object.Status {
			t.Fatalf("round trip changed %+v to %+v", d, again)
		}
	})
}
