// Package sdktest emulates the sluice policy host, so a policy written with the
// SDK is unit-tested with plain `go test`, like proxy-wasm's proxytest: inputs go
// through the same ABI encoding as in the real host, and the host's services
// (config values, shared key/value store, clock, log, counters) are in memory.
package sdktest

import (
	"fmt"
	"sync"
	"time"

	"github.com/sluicegw/sluice/sdk"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/sdk/internal/hostcall"
)

// Host is an emulated host. Only one is current at a time (the SDK's host
// functions are package-level, as in a guest): New installs it.
type Host struct {
	mu      sync.Mutex
	config  map[string]string
	kv      map[string]int64
	metrics map[string]int64
	logs    []string
	clock   func() time.Time
}

// New installs an emulated host with the given slot config values.
func New(config map[string]string) *Host {
	h := &Host{config: config, kv: map[string]int64{}, metrics: map[string]int64{}, clock: time.Now}
	hostcall.Current = h
	return h
}

// SetClock replaces the host clock (the default is time.Now).
func (h *Host) SetClock(f func() time.Time) { h.mu.Lock(); h.clock = f; h.mu.Unlock() }

// calls makes the handlers run one at a time, as in a guest: the SDK decodes
// into memory it reuses from call to call.
var calls sync.Mutex

// Route runs the policy's route handler through the ABI encoding.
func (h *Host) Route(in *abi.RouteInput) (abi.RouteOutput, error) {
	calls.Lock()
	defer calls.Unlock()
	hostcall.Current = h
	b, err := sdk.CallRoute(abi.AppendRouteInput(nil, in), nil)
	if err != nil {
		return abi.RouteOutput{}, err
	}
	var out abi.RouteOutput
	if err := abi.DecodeRouteOutput(b, &out); err != nil {
		return abi.RouteOutput{}, fmt.Errorf("the policy's output does not decode: %w", err)
	}
	return out, nil
}

// Throttle runs the policy's throttle handler through the ABI encoding.
func (h *Host) Throttle(in *abi.ThrottleInput) (abi.ThrottleOutput, error) {
	calls.Lock()
	defer calls.Unlock()
	hostcall.Current = h
	b, err := sdk.CallThrottle(abi.AppendThrottleInput(nil, in), nil)
	if err != nil {
		return abi.ThrottleOutput{}, err
	}
	var out abi.ThrottleOutput
	if err := abi.DecodeThrottleOutput(b, &out); err != nil {
		return abi.ThrottleOutput{}, fmt.Errorf("the policy's output does not decode: %w", err)
	}
	return out, nil
}

// Auth runs the policy's auth handler through the ABI encoding.
func (h *Host) Auth(in *abi.AuthInput) (abi.AuthOutput, error) {
	calls.Lock()
	defer calls.Unlock()
	hostcall.Current = h
	b, err := sdk.CallAuth(abi.AppendAuthInput(nil, in), nil)
	if err != nil {
		return abi.AuthOutput{}, err
	}
	var out abi.AuthOutput
	if err := abi.DecodeAuthOutput(b, &out); err != nil {
		return abi.AuthOutput{}, fmt.Errorf("the policy's output does not decode: %w", err)
	}
	return out, nil
}

// KV returns a value of the shared store.
func (h *Host) KV(key string) int64 { return h.KVGet(key) }

// Metric returns a counter the policy added to.
func (h *Host) Metric(name string) int64 { h.mu.Lock(); defer h.mu.Unlock(); return h.metrics[name] }

// Logs returns the lines the policy logged.
func (h *Host) Logs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.logs...)
}

// The hostcall.Host methods.

func (h *Host) Log(level int32, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, fmt.Sprintf("%d %s", level, msg))
}
func (h *Host) Now() int64 { h.mu.Lock(); defer h.mu.Unlock(); return h.clock().UnixNano() }
func (h *Host) Config(key string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.config[key]
	return v, ok
}
func (h *Host) KVAdd(key string, d int64) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kv[key] += d
	return h.kv[key]
}
func (h *Host) KVGet(key string) int64    { h.mu.Lock(); defer h.mu.Unlock(); return h.kv[key] }
func (h *Host) KVSet(key string, v int64) { h.mu.Lock(); defer h.mu.Unlock(); h.kv[key] = v }
func (h *Host) MetricAdd(name string, d int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.metrics[name] += d
}

var _ hostcall.Host = (*Host)(nil)
