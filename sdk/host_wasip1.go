//go:build wasip1

package sdk

import (
	"runtime/debug"
	"unsafe"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Host imports, module "sluice" (wasm/ABI.md).

//go:wasmimport sluice log
func _log(level int32, ptr, n uint32)

//go:wasmimport sluice now
func _now() int64

//go:wasmimport sluice config_get
func _configGet(kptr, klen, out, outCap uint32) int32

//go:wasmimport sluice kv_add
func _kvAdd(kptr, klen uint32, delta int64) int64

//go:wasmimport sluice kv_get
func _kvGet(kptr, klen uint32) int64

//go:wasmimport sluice kv_set
func _kvSet(kptr, klen uint32, v int64)

//go:wasmimport sluice metric_add
func _metricAdd(ptr, n uint32, delta int64)

func strPtr(s string) (uint32, uint32) {
	if len(s) == 0 {
		return 0, 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))), uint32(len(s))
}

func hostLog(level int32, msg string) { p, n := strPtr(msg); _log(level, p, n) }
func hostNow() int64                  { return _now() }

func hostConfig(key string) (string, bool) {
	kp, kn := strPtr(key)
	buf := make([]byte, 256)
	for {
		n := _configGet(kp, kn, uint32(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf)))
		if n < 0 {
			return "", false
		}
		if int(n) <= len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, n)
	}
}

func hostKVAdd(key string, d int64) int64 { kp, kn := strPtr(key); return _kvAdd(kp, kn, d) }
func hostKVGet(key string) int64          { kp, kn := strPtr(key); return _kvGet(kp, kn) }
func hostKVSet(key string, v int64)       { kp, kn := strPtr(key); _kvSet(kp, kn, v) }
func hostMetricAdd(name string, d int64)  { p, n := strPtr(name); _metricAdd(p, n, d) }

// A policy's live heap is small and its garbage per call is short-lived: collect
// less often than Go's default, trading a little memory for fewer pauses.
func init() { debug.SetGCPercent(400) }

// Guest exports.

var (
	inBuf  []byte
	outBuf []byte
)

//go:wasmexport sluice_abi_version
func _abiVersion() int32 { return abi.Version }

// sluice_alloc returns a buffer of at least n bytes for the host to write the
// next input into. The guest owns it; it stays valid until the next alloc.
//
//go:wasmexport sluice_alloc
func _alloc(n int32) uint32 {
	if n <= 0 {
		n = 1
	}
	if cap(inBuf) < int(n) {
		inBuf = make([]byte, n)
	}
	inBuf = inBuf[:n]
	return uint32(uintptr(unsafe.Pointer(&inBuf[0])))
}

func result(out []byte, err error) uint64 {
	if err != nil {
		return 0 // length 0: the host reports an undecodable output
	}
	outBuf = out
	if len(out) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&out[0])))<<32 | uint64(len(out))
}

// guestBytes is the input the host wrote at ptr. (An array pointer sliced,
// rather than unsafe.Slice, whose length check is a runtime call in a guest.)
func guestBytes(ptr, n uint32) []byte {
	return (*[1 << 30]byte)(unsafe.Pointer(uintptr(ptr)))[:n:n]
}

// lastAgents keeps the agents of the last answer given by reference alive
// until the host has read them (it does before the next call).
var lastAgents []string

//go:wasmexport sluice_route
func _route(ptr, n uint32) uint64 {
	// decideRoute's steps, written out: one call fewer per decision.
	if routeDec.Decode(guestBytes(ptr, n), &routeIn) != nil {
		return 0 // the host reports an undecodable input
	}
	var ro RouteOutput
	if routeFn != nil {
		ro = routeFn(&routeIn)
	} else {
		ro = noRouteHandler()
	}
	if ro.Reject == nil && len(ro.Agents) > 0 {
		// The answer by reference: the host reads the ids where they are.
		lastAgents = ro.Agents
		addr := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(ro.Agents))))
		return result(abi.AppendRouteAgentsRef(outBuf[:0], addr, len(ro.Agents)), nil)
	}
	return result(abi.AppendRouteOutput(outBuf[:0], &ro), nil)
}

//go:wasmexport sluice_throttle
func _throttle(ptr, n uint32) uint64 {
	return result(CallThrottle(guestBytes(ptr, n), outBuf[:0]))
}

//go:wasmexport sluice_auth
func _auth(ptr, n uint32) uint64 {
	return result(CallAuth(guestBytes(ptr, n), outBuf[:0]))
}
