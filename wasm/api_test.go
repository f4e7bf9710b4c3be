package wasm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestThePluginsAPIShowsSwapsRefusesBadModulesAndRollsBack(t *testing.T) {
	h := newHost(t, Config{})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	call := func(method, path string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(string(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := call("PUT", "/v1/plugins/route", testModule(t, "good"))
	if code != 200 || !strings.Contains(body, `"abi": 1`) {
		t.Fatalf("PUT good: %d %s", code, body)
	}
	code, body = call("PUT", "/v1/plugins/route", testModule(t, "wrong-abi"))
	if code != 422 || !strings.Contains(body, "module-refused") || !strings.Contains(body, "ABI v2") {
		t.Fatalf("PUT wrong-abi: %d %s", code, body)
	}
	if code, _ = call("PUT", "/v1/plugins/ingest", testModule(t, "good")); code != 404 {
		t.Fatalf("PUT to an unknown slot: %d", code)
	}
	code, body = call("GET", "/v1/plugins", nil)
	var st struct{ Slots []SlotStatus }
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Slots[0].Module.Source != "PUT /v1/plugins/route" || st.Slots[0].Previous == nil {
		t.Fatalf("GET: %d %s", code, body)
	}
	code, body = call("POST", "/v1/plugins/route/rollback", nil)
	if code != 200 || !strings.Contains(body, "builtin:route-hrw") {
		t.Fatalf("rollback: %d %s", code, body)
	}
}

// TestAModuleDroppedInThePluginDirectoryIsLoaded measures the time from the file's
// arrival to the swap (the module's compilation is cached by then).
func TestAModuleDroppedInThePluginDirectoryIsLoaded(t *testing.T) {
	dir := t.TempDir()
	h := newHost(t, Config{Dir: dir})
	good := testModule(t, "good")
	// Warm the compilation cache, then return to the built-in.
	if _, err := h.Load(context.Background(), SlotRoute, good, "warm"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Rollback(context.Background(), SlotRoute); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".route.wasm.tmp")
	os.WriteFile(tmp, good, 0o644)
	arrived := time.Now()
	os.Rename(tmp, filepath.Join(dir, "route.wasm"))
	waitLoaded(t, h, sha(good))
	t.Logf("swap took effect %s after the file arrived", time.Since(arrived))
	// A bad module dropped in is refused and the good one stays.
	os.WriteFile(filepath.Join(dir, "route.wasm"), testModule(t, "missing-export"), 0o644)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.Status()[0].LastError, "does not export sluice_route") {
		if time.Now().After(deadline) {
			t.Fatalf("the refusal is not visible in the slot's status: %+v", h.Status()[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cur := h.slots[SlotRoute].cur.Load().info.SHA256; cur != sha(good) {
		t.Fatal("a refused module from the directory replaced the current one")
	}
}

func waitLoaded(t *testing.T, h *Host, want string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if h.slots[SlotRoute].cur.Load().info.SHA256 == want {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the module in the plugin directory was not loaded")
	return 0
}
