package plugins_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/internal/wasmbuild"
	"github.com/sluicegw/sluice/plugins"
)

// TestCommittedModulesAreFreshBuildsOfTheirSources rebuilds every built-in
// policy and compares it byte for byte with the committed .wasm.
func TestCommittedModulesAreFreshBuildsOfTheirSources(t *testing.T) {
	for _, name := range plugins.Names {
		out := filepath.Join(t.TempDir(), name+".wasm")
		if err := wasmbuild.Build("./"+name, out); err != nil {
			t.Fatal(err)
		}
		fresh, _ := os.ReadFile(out)
		committed, err := plugins.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s.wasm is stale (%d bytes committed, %d built): run `go generate ./plugins`", name, len(committed), len(fresh))
		}
	}
}
