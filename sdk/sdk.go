// Package sdk is what a sluice policy author imports: the decision types, the
// registration of route, throttle and auth handlers, and the host's services (log,
// clock, config values, counters, and a key/value store shared by every instance
// of the policy). Build a policy with `sluice plugin build DIR`; test it natively
// with package sdktest, which emulates the host.
//
//	func init() { sdk.HandleRoute(route) }
//	func route(in *sdk.RouteInput) sdk.RouteOutput { ... }
//	func main() {}
//
// A Go guest pays several times what native code does for every call, loop
// iteration, allocation and string comparison, so the SDK offers what a route
// policy usually needs at a lower price: in.Eligible(c) (serving, and offers
// the purpose asked for) is a flag test on candidates the SDK examined when
// they arrived; c.IDHash() is the id's hash, computed then too; and
// in.AgentList(n) is memory for the answer that the SDK reuses, so building it
// allocates nothing. The candidates themselves are decoded only when the host
// sends ones the policy has not seen.
//
// A handler's input lives only for its call: the SDK decodes into memory it
// reuses, so a policy that keeps anything across calls (a stream id in a map,
// say) keeps a copy, made with strings.Clone. Handlers run one at a time.
//
// The package speaks policy ABI v1 (wasm/ABI.md in the sluice repository) and
// imports nothing of the host side.
package sdk

import (
	"strconv"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Decision types; see package abi for their fields.
type (
	RouteInput     = abi.RouteInput
	Candidate      = abi.Candidate
	Pairs          = abi.Pairs // headers and tags: read them with Get, Value or All
	RouteOutput    = abi.RouteOutput
	Rejection      = abi.Rejection
	ThrottleInput  = abi.ThrottleInput
	PoolFigures    = abi.PoolFigures
	ThrottleOutput = abi.ThrottleOutput
	Action         = abi.Action
	AuthInput      = abi.AuthInput
	TokenClaims    = abi.TokenClaims
	AuthOutput     = abi.AuthOutput
)

// Auth input kinds beside abi.OpPublish and abi.OpPlay.
const (
	// KindPublishEnd tells an auth policy that a publish it allowed is no
	// longer live on the gateway; its answer is ignored. A quota counts down
	// with it.
	KindPublishEnd = abi.KindPublishEnd
)

// Throttle actions.
const (
	Admit    = abi.Admit
	Queue    = abi.Queue
	Reject   = abi.Reject
	Redirect = abi.Redirect
	Origin   = abi.Origin
)

// Log levels.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)

var (
	routeFn    func(*RouteInput) RouteOutput
	throttleFn func(*ThrottleInput) ThrottleOutput
	authFn     func(*AuthInput) AuthOutput
)

// HandleRoute registers the policy's route handler. Call it from init.
func HandleRoute(f func(*RouteInput) RouteOutput) { routeFn = f }

// HandleThrottle registers the policy's throttle handler. Call it from init.
func HandleThrottle(f func(*ThrottleInput) ThrottleOutput) { throttleFn = f }

// HandleAuth registers the policy's auth handler. Call it from init.
func HandleAuth(f func(*AuthInput) AuthOutput) { authFn = f }

// routeIn, its decoder and throttleIn are reused from call to call, and their strings point
// into the host's input buffer or the decoder's memory: a handler must not keep
// its input (copy what it needs with strings.Clone).
var (
	routeIn    RouteInput
	routeDec   abi.RouteDecoder
	throttleIn ThrottleInput
	authIn     AuthInput
	authClaims TokenClaims
)

// CallRoute runs the registered route handler on an encoded input and returns
// the encoded output, as the host's call does. Emulators use it. The input given
// to the handler is valid only during the call. Calls must not overlap (the
// SDK decodes into memory it reuses, as in a guest): sdktest serialises them.
func CallRoute(in []byte, out []byte) ([]byte, error) {
	ro, err := decideRoute(in)
	if err != nil {
		return out, err
	}
	return abi.AppendRouteOutput(out, &ro), nil
}

// decideRoute decodes an input and runs the handler on it (the guest's export,
// sluice_route, does the same without the call).
func decideRoute(in []byte) (RouteOutput, error) {
	if err := routeDec.Decode(in, &routeIn); err != nil {
		return RouteOutput{}, err
	}
	if routeFn == nil {
		return noRouteHandler(), nil
	}
	return routeFn(&routeIn), nil
}

// noRouteHandler is the answer of a policy that registered no route handler.
func noRouteHandler() RouteOutput {
	return RouteOutput{Reject: &Rejection{Status: 501, Reason: "this policy has no route handler"}}
}

// CallThrottle is CallRoute for the throttle handler; its calls must not
// overlap either.
func CallThrottle(in []byte, out []byte) ([]byte, error) {
	ti := &throttleIn
	if err := abi.DecodeThrottleInputView(in, ti); err != nil {
		return out, err
	}
	to := ThrottleOutput{Action: Admit}
	if throttleFn != nil {
		to = throttleFn(ti)
	}
	return abi.AppendThrottleOutput(out, &to), nil
}

// CallAuth is CallRoute for the auth handler; its calls must not overlap
// either. A policy with no auth handler denies (403): an auth slot fails
// closed by default.
func CallAuth(in []byte, out []byte) ([]byte, error) {
	ai := &authIn
	if err := abi.DecodeAuthInputView(in, ai, &authClaims); err != nil {
		return out, err
	}
	ao := AuthOutput{Status: 403, Reason: "this policy has no auth handler"}
	if authFn != nil {
		ao = authFn(ai)
	}
	return abi.AppendAuthOutput(out, &ao), nil
}

// Log writes a line to the host's log at a level (LevelInfo, …).
func Log(level int32, msg string) { hostLog(level, msg) }

// NowNanos is the host's clock, Unix nanoseconds.
func NowNanos() int64 { return hostNow() }

// Config returns the slot's config value for key.
func Config(key string) (string, bool) { return hostConfig(key) }

// ConfigInt returns an integer config value, or def when absent or malformed.
func ConfigInt(key string, def int) int {
	if v, ok := Config(key); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

// KVAdd atomically adds delta to key in the slot's shared store and returns the
// new value. Every instance of the policy sees the same store.
func KVAdd(key string, delta int64) int64 { return hostKVAdd(key, delta) }

// KVGet reads key from the shared store (0 when absent).
func KVGet(key string) int64 { return hostKVGet(key) }

// KVSet sets key in the shared store.
func KVSet(key string, v int64) { hostKVSet(key, v) }

// MetricAdd adds delta to the policy's value name, the host's gauge
// sluice_plugin_counter{slot,name} (64 names a slot, the rest "_other").
func MetricAdd(name string, delta int64) { hostMetricAdd(name, delta) }

// HostEnv is the host's config and shared store as a value, for policy code that
// takes them as an interface.
type HostEnv struct{}

func (HostEnv) Config(key string) (string, bool) { return Config(key) }
func (HostEnv) KVGet(key string) int64           { return KVGet(key) }
func (HostEnv) KVSet(key string, v int64)        { KVSet(key, v) }
