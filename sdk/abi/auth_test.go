package abi

import (
	"errors"
	"reflect"
	"testing"
)

func sampleAuth() *AuthInput {
	return &AuthInput{Kind: OpPublish, StreamID: "cam-1", Path: "/whip/cam-1", Protocol: "whip", Client: "10.0.0.9",
		Headers: MakePairs("User-Agent", "obs"), Token: &TokenClaims{Subject: "enc-1", Tenant: "acme", Role: "read", Issuer: "iss",
			ExpiresNanos: 1 << 61, Granted: true, MaxViewers: 10, MaxBitrate: 4_000_000}, NowNanos: 1 << 60}
}

func TestAuthMessagesRoundTripExactly(t *testing.T) {
	for _, in := range []*AuthInput{sampleAuth(), {Kind: OpPlay, StreamID: "x", Check: "token-missing"}} {
		var back, view AuthInput
		var claims TokenClaims
		enc := AppendAuthInput(nil, in)
		if err := DecodeAuthInput(enc, &back); err != nil || !reflect.DeepEqual(*in, back) {
			t.Fatalf("auth input: %v\n%+v\n%+v", err, *in, back)
		}
		if err := DecodeAuthInputView(enc, &view, &claims); err != nil || !reflect.DeepEqual(*in, view) {
			t.Fatalf("auth input (guest decoder): %v\n%+v", err, view)
		}
		if n := testing.AllocsPerRun(100, func() { _ = DecodeAuthInputView(enc, &view, &claims) }); n != 0 {
			t.Fatalf("the guest's auth decoder allocates %v times per input, want none", n)
		}
	}
	for _, out := range []AuthOutput{{Allow: true}, {Status: 429, Reason: "quota"}} {
		var b AuthOutput
		if err := DecodeAuthOutput(AppendAuthOutput(nil, &out), &b); err != nil || (out.Allow != b.Allow || out.Reason != b.Reason) {
			t.Fatalf("auth output %+v: %v %+v", out, err, b)
		}
	}
	var o AuthOutput
	if err := DecodeAuthOutput(AppendAuthOutput(nil, &AuthOutput{}), &o); err != nil || o.Status != 403 {
		t.Fatalf("a denial without a status: %v %+v, want 403", err, o)
	}
}

func TestAuthDecodersRefuseBadMessages(t *testing.T) {
	full := AppendAuthInput(nil, sampleAuth())
	var in AuthInput
	for i := 0; i < len(full); i++ {
		if err := DecodeAuthInput(full[:i], &in); !errors.Is(err, ErrDecode) {
			t.Fatalf("truncated at %d of %d: %v", i, len(full), err)
		}
	}
	if err := DecodeAuthInput(append(full, 0), &in); !errors.Is(err, ErrDecode) {
		t.Fatalf("trailing byte: %v", err)
	}
	var out AuthOutput
	for _, b := range [][]byte{AppendAuthOutput(nil, &AuthOutput{Status: 200}), {2, 0, 0}, {1, 0}} {
		if err := DecodeAuthOutput(b, &out); !errors.Is(err, ErrDecode) {
			t.Errorf("%x: %v", b, err)
		}
	}
}

func FuzzDecodeAuthInput(f *testing.F) {
	f.Add(AppendAuthInput(nil, sampleAuth()))
	f.Add(AppendAuthInput(nil, &AuthInput{Check: "off"}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, view AuthInput
		var claims TokenClaims
		err := DecodeAuthInput(b, &in)
		if (DecodeAuthInputView(b, &view, &claims) == nil) != (err == nil) {
			t.Fatal("the guest's decoder and the host's disagree")
		}
		if err == nil {
			var again AuthInput
			if err := DecodeAuthInput(AppendAuthInput(nil, &in), &again); err != nil || !reflect.DeepEqual(in, again) {
				t.Fatalf("a decoded input does not re-encode: %v", err)
			}
		}
		var out AuthOutput
		_ = DecodeAuthOutput(b, &out)
	})
}
