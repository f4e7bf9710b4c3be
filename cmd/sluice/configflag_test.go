package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a config file for a test and returns its path.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runIn runs a subcommand in this process and returns its exit code and output.
func runIn(args ...string) (int, string) {
	var out bytes.Buffer
	code := run(context.Background(), args, &out, &out)
	return code, out.String()
}

func TestStatusReadsTheGatewaysAddressAndTokenFromConfig(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" || r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"agents":[{"agent":"from-config","nodes":[]}]}`))
	}))
	defer srv.Close()
	cfg := writeConfig(t, "gateway:\n  listen: "+strings.TrimPrefix(srv.URL, "http://")+"\n  apiToken: s3cret\n")
	t.Setenv("SLUICE_API_TOKEN", "")
	code, out := runIn("status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "agent/from-config") {
		t.Fatalf("sluice status --config: exit %d\n%s", code, out)
	}
}

func TestCAReadsTheDirectoryAndNameFromConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	cfg := writeConfig(t, "tls:\n  dir: "+dir+"\n  name: gw-7\n")
	if code, out := runIn("ca", "init", "--config", cfg); code != 0 {
		t.Fatalf("ca init --config: exit %d\n%s", code, out)
	}
	if code, out := runIn("ca", "issue", "--config", cfg, "--host", "127.0.0.1"); code != 0 {
		t.Fatalf("ca issue --config: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "gw-7.crt")); err != nil {
		t.Fatalf("ca issue did not write tls.name's certificate into tls.dir: %v", err)
	}
}

func TestPluginTestTakesTheSlotsConfigFromTheFile(t *testing.T) {
	cfg := writeConfig(t, `plugins:
  slots:
    throttle:
      config:
        relay.enable: "true"
        relay.matchingList: '[{"pattern":"^/whep/","action":"error"}]'
`)
	input := filepath.Join(t.TempDir(), "decision.json")
	os.WriteFile(input, []byte(`{"slot":"throttle","input":{"kind":"play","path":"/whep/s","pools":[{"purpose":"relay","concurrent":1,"queued":9}]}}`), 0o600)
	wasmFile := filepath.Join("..", "..", "plugins", "throttle-m2.wasm")
	code, out := runIn("plugin", "test", wasmFile, "--input", input, "--config", cfg)
	if code != 0 || !strings.Contains(out, `"status": 510`) {
		t.Fatalf("plugin test --config: exit %d\n%s", code, out)
	}
	code, out = runIn("plugin", "test", wasmFile, "--input", input)
	if code != 0 || !strings.Contains(out, `"action": "admit"`) {
		t.Fatalf("without --config the throttle is off and admits: exit %d\n%s", code, out)
	}
}

func TestEverySubcommandThatReadsSettingsRefusesABadConfig(t *testing.T) {
	bad := writeConfig(t, "process:\n  relay:\n    concurrent: many\n")
	for _, args := range [][]string{
		{"status"}, {"ca", "init"}, {"plugin", "test", "x.wasm", "--input", "x.json"}, {"bench"},
		{"dev", "--http", "127.0.0.1:0"}, {"gateway"}, {"agent"},
	} {
		code, out := runIn(append(args, "--config", bad)...)
		if code == 0 || !strings.Contains(out, `process.relay.concurrent: "many" is not a number`) {
			t.Errorf("sluice %s --config BAD: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
}
