package main

import (
	"context"
	"reflect"
	"testing"

	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/sdktest"
	"github.com/sluicegw/sluice/wasm/wasmtest"
)

func req(kind, tenant, stream string) *abi.AuthInput {
	return &abi.AuthInput{Kind: kind, StreamID: stream, Protocol: "whip", Client: "127.0.0.1",
		Token: &abi.TokenClaims{Subject: "enc-" + stream, Tenant: tenant, Granted: true}}
}

// The steps of the quota, as a gateway asks: two streams of acme are
// allowed, a third refused with 429 while beta (limit 1 of its own) is
// counted apart; when one of acme's ends, acme may publish again. Plays are
// not counted.
var steps = []struct {
	in    *abi.AuthInput
	allow bool
}{
	{req(abi.OpPublish, "acme", "a1"), true},
	{req(abi.OpPublish, "acme", "a2"), true},
	{req(abi.OpPlay, "acme", "a1"), true},
	{req(abi.OpPublish, "acme", "a3"), false},
	{req(abi.OpPublish, "beta", "b1"), true},
	{req(abi.OpPublish, "beta", "b2"), false},
	{req(abi.KindPublishEnd, "acme", "a1"), true},
	{req(abi.OpPublish, "acme", "a3"), true},
}

var config = map[string]string{"max-streams": "2", "max-streams.beta": "1"}

func TestEachTenantPublishesAtMostItsQuotaAtOnce(t *testing.T) {
	emu := sdktest.New(config)
	for i, s := range steps {
		out, err := emu.Auth(s.in)
		if err != nil {
			t.Fatal(err)
		}
		if out.Allow != s.allow || !s.allow && out.Status != 429 {
			t.Fatalf("step %d (%s %s/%s): %+v, want allow=%v", i, s.in.Kind, s.in.Token.Tenant, s.in.StreamID, out, s.allow)
		}
	}
	if emu.KV("streams/acme") != 2 || emu.KV("streams/beta") != 1 || emu.Metric("quota_denials") != 2 {
		t.Fatalf("store acme=%d beta=%d, denials %d; want 2, 1, 2", emu.KV("streams/acme"), emu.KV("streams/beta"), emu.Metric("quota_denials"))
	}
	// A token the JWT check did not grant is refused as the built-in refuses it.
	bad := req(abi.OpPublish, "acme", "x")
	bad.Check, bad.Token.Granted = "not-granted", false
	if out, _ := emu.Auth(bad); out.Allow || out.Status != 403 {
		t.Fatalf("an ungranted publish: %+v, want 403", out)
	}
}

// TestTheExampleDecidesAlikeInTheRealHost builds the example to Wasm, loads it
// into a policy host's auth slot and runs the same steps.
func TestTheExampleDecidesAlikeInTheRealHost(t *testing.T) {
	emu := sdktest.New(config)
	h := wasmtest.Host(t, ".", "auth", config)
	for i, s := range steps {
		native, err := emu.Auth(s.in)
		if err != nil {
			t.Fatal(err)
		}
		viaWasm, err := h.Authorize(context.Background(), s.in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(native, viaWasm) {
			t.Fatalf("step %d: emulator %+v, host %+v", i, native, viaWasm)
		}
	}
}
