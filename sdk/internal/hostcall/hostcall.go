// Package hostcall is the seam between the SDK's host functions and whatever
// provides them outside a Wasm host: the sdktest emulator.
package hostcall

// Host is what a policy can ask of its host (ABI v1 imports).
type Host interface {
	Log(level int32, msg string)
	Now() int64 // Unix nanoseconds
	Config(key string) (string, bool)
	KVAdd(key string, delta int64) int64
	KVGet(key string) int64
	KVSet(key string, v int64)
	MetricAdd(name string, delta int64)
}

// Current is the host of native (non-Wasm) builds; nil means a silent host with
// an empty config, a real clock and a local key/value store.
var Current Host
