package wasm

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/sluicegw/sluice/sdk/abi"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir(t)
	}
	h, err := New(context.Background(), cfg, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func candidates(n int) []abi.Candidate {
	cs := make([]abi.Candidate, n)
	for i := range cs {
		cs[i] = abi.Candidate{ID: "agent-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Purposes: []string{"relay"}, Capacity: 100, Load: i % 7, State: "serving"}
	}
	return cs
}

func TestBuiltInRoutePolicyDecidesThroughTheHostLikeTheNativeCode(t *testing.T) {
	h := newHost(t, Config{})
	in := &abi.RouteInput{StreamID: "cam-1", Op: abi.OpPublish, Protocol: "whip", Purpose: "relay", Candidates: candidates(16)}
	out, err := h.Route(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Agents) == 0 || out.Reject != nil {
		t.Fatalf("route = %+v", out)
	}
	st := h.Status()
	for _, s := range st {
		if s.Slot == "route" && (s.Calls != 1 || s.Fallbacks != 0 || s.Module == nil || s.Module.ABI != 1) {
			t.Fatalf("route slot status = %+v", s)
		}
	}
}
