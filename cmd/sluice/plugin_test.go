package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginBuildTestAndInspectWorkOnTheExamplePolicy runs the policy author's
// three commands on examples/plugins/region-affinity.
func TestPluginBuildTestAndInspectWorkOnTheExamplePolicy(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "ra.wasm")
	out := sluiceOK(t, "plugin", "build", "../../examples/plugins/region-affinity", "-o", mod)
	if !strings.Contains(out, "built "+mod) {
		t.Fatalf("build said %q", out)
	}
	out = sluiceOK(t, "plugin", "inspect", mod)
	for _, want := range []string{"route    fits: ABI v1", "sluice_route(i32, i32) → (i64)", "sluice_alloc(i32) → (i32)"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	decision := filepath.Join(dir, "decision.json")
	os.WriteFile(decision, []byte(`{"slot":"route","config":{"default-region":"us"},"input":{"stream":"cam-1","op":"publish","protocol":"whip","purpose":"relay",
	 "candidates":[{"id":"a1","tags":{"region":"eu"},"purposes":["relay"],"capacity":10,"load":1,"state":"serving"},
	               {"id":"a2","tags":{"region":"us"},"purposes":["relay"],"capacity":10,"load":5,"state":"serving"}]}}`), 0o644)
	out = sluiceOK(t, "plugin", "test", mod, "--input", decision)
	if i, j := strings.Index(out, `"a2"`), strings.Index(out, `"a1"`); i < 0 || j < 0 || i > j {
		t.Fatalf("the us agent should come first for a us client:\n%s", out)
	}
	// A module that is not Wasm is refused with a clear message.
	bad := filepath.Join(dir, "bad.wasm")
	os.WriteFile(bad, []byte("nope"), 0o644)
	if o, err := runSluice("plugin", "inspect", bad); err == nil || !strings.Contains(o, "not a valid module") {
		t.Fatalf("inspect of a non-module: %v\n%s", err, o)
	}
}
