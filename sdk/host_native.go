//go:build !wasip1

package sdk

import (
	"sync"
	"time"

	"github.com/sluicegw/sluice/sdk/internal/hostcall"
)

// Outside a Wasm host the services come from hostcall.Current (the sdktest
// emulator), or from this local stand-in when no emulator is installed.

var local struct {
	mu sync.Mutex
	kv map[string]int64
}

func hostLog(level int32, msg string) {
	if h := hostcall.Current; h != nil {
		h.Log(level, msg)
	}
}

func hostNow() int64 {
	if h := hostcall.Current; h != nil {
		return h.Now()
	}
	return time.Now().UnixNano()
}

func hostConfig(key string) (string, bool) {
	if h := hostcall.Current; h != nil {
		return h.Config(key)
	}
	return "", false
}

func hostKVAdd(key string, d int64) int64 {
	if h := hostcall.Current; h != nil {
		return h.KVAdd(key, d)
	}
	local.mu.Lock()
	defer local.mu.Unlock()
	if local.kv == nil {
		local.kv = map[string]int64{}
	}
	local.kv[key] += d
	return local.kv[key]
}

func hostKVGet(key string) int64 {
	if h := hostcall.Current; h != nil {
		return h.KVGet(key)
	}
	return hostKVAdd(key, 0)
}

func hostKVSet(key string, v int64) {
	if h := hostcall.Current; h != nil {
		h.KVSet(key, v)
		return
	}
	local.mu.Lock()
	defer local.mu.Unlock()
	if local.kv == nil {
		local.kv = map[string]int64{}
	}
	local.kv[key] = v
}

func hostMetricAdd(name string, d int64) {
	if h := hostcall.Current; h != nil {
		h.MetricAdd(name, d)
	}
}
