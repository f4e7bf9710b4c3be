package wasm_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/plugins"
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

// authHost is a policy host whose auth slot is sc, with the built-in auth
// policy as its native fallback, closed when the test ends.
func authHost(t *testing.T, sc wasm.SlotConfig) *wasm.Host {
	t.Helper()
	ctx := context.Background()
	h, err := wasm.New(ctx, wasm.Config{CacheDir: t.TempDir(), Slots: map[string]wasm.SlotConfig{wasm.SlotAuth: sc},
		Fallback: wasm.Fallback{Auth: func(_ wasm.Env, in *abi.AuthInput) abi.AuthOutput { return policy.AuthGrants(in) }}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(ctx) })
	return h
}

func authIn(stream, client string) *abi.AuthInput {
	return &abi.AuthInput{Kind: abi.OpPublish, StreamID: stream, Path: "/whip/" + stream, Protocol: "whip", Client: client,
		Token: &abi.TokenClaims{Subject: "enc", Granted: false}, Check: "not-granted", NowNanos: time.Now().UnixNano()}
}

// A guest in the auth slot denies by client address with its own status and
// reason, and allows the rest, whatever the JWT check said.
func TestAnAuthGuestDeniesByClientAddress(t *testing.T) {
	h := authHost(t, wasm.SlotConfig{Module: goGuest(t, "testdata/authdeny"), Config: map[string]string{"deny": "10."}, Failure: wasm.FailClosed})
	ctx := context.Background()
	for _, tc := range []struct {
		client string
		allow  bool
	}{{"10.1.2.3", false}, {"127.0.0.1", true}, {"192.168.10.1", true}} {
		out, err := h.Authorize(ctx, authIn("cam", tc.client))
		if err != nil || out.Allow != tc.allow || !tc.allow && (out.Status != 403 || out.Reason != "client "+tc.client+" is denied") {
			t.Errorf("client %s: %+v, %v; want allow=%v", tc.client, out, err, tc.allow)
		}
	}
	if st := h.Status()[2]; st.Slot != wasm.SlotAuth || st.Calls != 3 || st.Fallbacks != 0 {
		t.Fatalf("auth slot status %+v: want 3 calls decided by the module", st)
	}
}

// A guest that traps is answered by the slot's failure setting: open allows,
// closed denies with 503, fallback decides natively (the built-in: the JWT
// check's verdict, here a 403); the next call is the module's again.
func TestAnAuthGuestThatTrapsIsAnsweredByTheFailureSetting(t *testing.T) {
	guest := goGuest(t, "testdata/authdeny")
	ctx := context.Background()
	for _, tc := range []struct {
		failure string
		allow   bool
		status  int
	}{{wasm.FailOpen, true, 0}, {wasm.FailClosed, false, 503}, {wasm.FailFallback, false, 403}} {
		t.Run(tc.failure, func(t *testing.T) {
			h := authHost(t, wasm.SlotConfig{Module: guest, Failure: tc.failure, BreakerFailures: -1})
			out, err := h.Authorize(ctx, authIn("trap", "127.0.0.1"))
			if err != nil || out.Allow != tc.allow || out.Status != tc.status {
				t.Fatalf("trapping call: %+v, %v; want allow=%v status %d", out, err, tc.allow, tc.status)
			}
			if st := h.Status()[2]; st.Traps != 1 || st.Fallbacks != 1 {
				t.Fatalf("traps %d fallbacks %d, want 1 and 1", st.Traps, st.Fallbacks)
			}
			if out, err := h.Authorize(ctx, authIn("cam", "127.0.0.1")); err != nil || !out.Allow {
				t.Fatalf("the call after the trap: %+v, %v; want the module's allow", out, err)
			}
		})
	}
}

// The auth slot hot-swaps under load like the others: while three
// goroutines decide, 100 swaps between the built-in auth-grants (allows what
// the JWT check granted) and the address-denying guest fail no decision (the
// slot fails closed, so a failure would show as a 503), and each swap takes
// effect when Load returns.
func TestTheAuthSlotHotSwapsUnderLoadWithZeroFailedDecisions(t *testing.T) {
	grants, err := plugins.Builtin("auth-grants")
	if err != nil {
		t.Fatal(err)
	}
	deny, err := os.ReadFile(goGuest(t, "testdata/authdeny"))
	if err != nil {
		t.Fatal(err)
	}
	h := authHost(t, wasm.SlotConfig{Module: "", Config: map[string]string{"deny": "10."}, Failure: wasm.FailClosed, Pool: 2, BreakerFailures: -1, Deadline: 2 * time.Second})
	ctx := context.Background()
	in := authIn("cam", "10.0.0.9")
	in.Check, in.Token.Granted = "", true // auth-grants allows; the guest denies the address
	mods := []struct {
		b     []byte
		allow bool
	}{{grants, true}, {deny, false}}
	if _, err := h.Load(ctx, wasm.SlotAuth, grants, "auth-grants"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var decided, failed atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := h.Authorize(ctx, in)
				if err != nil || !out.Allow && out.Status != 403 {
					failed.Add(1)
				}
				decided.Add(1)
			}
		}()
	}
	for i := range 100 {
		m := mods[(i+1)%2]
		if _, err := h.Load(ctx, wasm.SlotAuth, m.b, "swap"); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("swap %d: %v", i, err)
		}
		if out, err := h.Authorize(ctx, in); err != nil || out.Allow != m.allow {
			close(stop)
			wg.Wait()
			t.Fatalf("swap %d: the first decision after Load returned was %+v, %v; want the new module's (allow=%v)", i, out, err, m.allow)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || decided.Load() < 100 {
		t.Fatalf("%d of %d decisions during 100 swaps failed", failed.Load(), decided.Load())
	}
	t.Logf("%d decisions during 100 swaps, none failed", decided.Load())
}
