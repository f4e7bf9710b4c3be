package wasm

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// TestThreeHundredSwapsThroughTheAPIKeepTheProcessNearItsStartUpSize swaps the
// route slot of a host set up as sluice dev sets it up (both slots, the
// built-ins, default pools) 300 times with PUT /v1/plugins/route, alternating
// the two built-in route policies, as an operator would. The process's RSS
// once the host has settled after the swaps (the previous module's code kept
// for KeepPrevious, then the tidier's round) must stay near its RSS after
// start-up: memory of retired modules must go back to the system, not wait in
// the Go heap or in code nobody runs. It logs where the memory is
// (memoryReport), right after the swaps too.
func TestThreeHundredSwapsThroughTheAPIKeepTheProcessNearItsStartUpSize(t *testing.T) {
	if testing.Short() {
		t.Skip("300 swaps")
	}
	h := newHost(t, Config{})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	mods := [][]byte{builtin(t, "route-least-loaded"), builtin(t, "route-hrw")}
	put := func(b []byte) {
		req, _ := http.NewRequest("PUT", srv.URL+"/v1/plugins/route", bytes.NewReader(b))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT: %s", resp.Status)
		}
	}
	time.Sleep(time.Second) // as an operator would find it after start-up
	start := rssBytes()
	t.Logf("after start-up: %s", memoryReport())
	for i := range 300 {
		put(mods[i%2])
		if i == 49 {
			t.Logf("after 50 swaps: %s", memoryReport())
		}
	}
	t.Logf("right after 300 swaps: %s", memoryReport())
	time.Sleep(h.cfg.KeepPrevious + tidyDelay + time.Second)
	end := rssBytes()
	t.Logf("after 300 swaps, settled: %s", memoryReport())
	t.Logf("RSS %d MiB after start-up, %d MiB after 300 swaps, settled (%+.1f%%)", start>>20, end>>20, 100*float64(end-start)/float64(start))
	if end > start+start/4 {
		t.Fatalf("RSS grew from %d to %d MiB over 300 swaps (limit +25%%)", start>>20, end>>20)
	}
}

// memoryReport says where the process's memory is: RSS, the Go heap's live
// objects, its goal and what it holds but does not use, and machine code
// compiled by wazero (anonymous executable mappings).
func memoryReport() string {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(samples)
	mib := func(i int) uint64 { return samples[i].Value.Uint64() >> 20 }
	return fmt.Sprintf("RSS %d MiB: heap objects %d MiB (goal %d), heap free %d and unused %d MiB not returned, anonymous memory %d MiB of which code %d MiB",
		rssBytes()>>20, mib(0), mib(1), mib(2), mib(3), anonRSS("rw")>>20, anonRSS("r-x")>>20)
}

// anonRSS is the resident size of the anonymous mappings whose permissions
// begin with perm, from /proc/self/smaps.
func anonRSS(perm string) int64 {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	match := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			match = strings.HasPrefix(fields[1], perm) && (len(fields) == 5 || strings.HasPrefix(fields[5], "["))
		case match && len(fields) >= 2 && fields[0] == "Rss:":
			var kb int64
			fmt.Sscan(fields[1], &kb)
			total += kb << 10
		}
	}
	return total
}
