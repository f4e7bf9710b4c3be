package abi

import (
	"errors"
	"reflect"
	"testing"
)

func sampleRoute() *RouteInput {
	return &RouteInput{StreamID: "cam-1", Op: OpPublish, Protocol: "whip", ClientAddr: "10.0.0.9", Headers: MakePairs("X-Region", "eu"),
		Purpose: "relay", Placement: "a2", Candidates: []Candidate{
			{ID: "a1", Tags: MakePairs("region", "eu"), Purposes: []string{"relay", "record"}, Capacity: 10, Load: 3, Queue: 1, State: "serving"},
			{ID: "a2", Purposes: []string{"relay"}, Capacity: -1, Load: 0, State: "draining"},
		}}
}

func TestMessagesRoundTripExactly(t *testing.T) {
	in := sampleRoute()
	var back RouteInput
	if err := DecodeRouteInput(AppendRouteInput(nil, in), &back); err != nil || !reflect.DeepEqual(*in, back) {
		t.Fatalf("route input: %v\n%+v\n%+v", err, *in, back)
	}
	var view RouteInput
	var rd RouteDecoder
	err := rd.Decode(AppendRouteInput(nil, in), &view)
	view.agents, view.elig = nil, 0 // the decoder's working memory
	for i := range view.Candidates {
		view.Candidates[i].flags, view.Candidates[i].idHash, view.Candidates[i].chunk = 0, 0, 0
	}
	if err != nil || !reflect.DeepEqual(*in, view) {
		t.Fatalf("route input (guest decoder): %v\n%+v", err, view)
	}
	for _, out := range []RouteOutput{{Agents: []string{"a", "b"}}, {Reject: &Rejection{Status: 503, Reason: "full"}}} {
		var b RouteOutput
		if err := DecodeRouteOutput(AppendRouteOutput(nil, &out), &b); err != nil || !reflect.DeepEqual(out, b) {
			t.Fatalf("route output %+v: %v %+v", out, err, b)
		}
	}
	ti := ThrottleInput{Kind: "play", StreamID: "s", Path: "/whep/s", Protocol: "whep", Client: "c", Pools: []PoolFigures{{"relay", 2, 1, 5}}, NowNanos: 1 << 60}
	var tb ThrottleInput
	if err := DecodeThrottleInput(AppendThrottleInput(nil, &ti), &tb); err != nil || !reflect.DeepEqual(ti, tb) {
		t.Fatalf("throttle input: %v %+v", err, tb)
	}
	enc := AppendThrottleInput(nil, &ti)
	var tv ThrottleInput
	for range 2 { // the second time into the memory of the first
		if err := DecodeThrottleInputView(enc, &tv); err != nil || !reflect.DeepEqual(ti, tv) {
			t.Fatalf("throttle input (guest decoder): %v %+v", err, tv)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = DecodeThrottleInputView(enc, &tv) }); n != 0 {
		t.Fatalf("the guest's throttle decoder allocates %v times per input, want none", n)
	}
	to := ThrottleOutput{Action: Reject, Status: 510, Body: []byte(`{"enable":false}`), ContentType: "application/json"}
	var tob ThrottleOutput
	if err := DecodeThrottleOutput(AppendThrottleOutput(nil, &to), &tob); err != nil || !reflect.DeepEqual(to, tob) {
		t.Fatalf("throttle output: %v %+v", err, tob)
	}
}

func TestDecodersRefuseTruncatedTrailingAndOutOfRangeMessages(t *testing.T) {
	full := AppendRouteInput(nil, sampleRoute())
	var in RouteInput
	for i := 0; i < len(full); i++ {
		if err := DecodeRouteInput(full[:i], &in); !errors.Is(err, ErrDecode) {
			t.Fatalf("truncated at %d of %d: err = %v", i, len(full), err)
		}
	}
	if err := DecodeRouteInput(append(full, 0), &in); !errors.Is(err, ErrDecode) {
		t.Fatalf("trailing byte: %v", err)
	}
	var out ThrottleOutput
	if err := DecodeThrottleOutput(AppendThrottleOutput(nil, &ThrottleOutput{Action: Reject, Status: 200}), &out); !errors.Is(err, ErrDecode) {
		t.Fatalf("reject with 200: %v", err)
	}
	if err := DecodeThrottleOutput(AppendThrottleOutput(nil, &ThrottleOutput{Action: Redirect}), &out); !errors.Is(err, ErrDecode) {
		t.Fatalf("redirect without URL: %v", err)
	}
	if err := DecodeThrottleOutput([]byte{9, 0, 0, 0, 0}, &out); !errors.Is(err, ErrDecode) {
		t.Fatalf("unknown action: %v", err)
	}
}

func FuzzDecodeRouteInput(f *testing.F) {
	f.Add(AppendRouteInput(nil, sampleRoute()))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var in RouteInput
		if DecodeRouteInput(b, &in) == nil {
			var again RouteInput
			if err := DecodeRouteInput(AppendRouteInput(nil, &in), &again); err != nil {
				t.Fatalf("a decoded input does not re-encode: %v", err)
			}
		}
		var v RouteInput
		var rd RouteDecoder
		_ = rd.Decode(b, &v)
	})
}
