package wasm

import (
	"os"
	"path/filepath"
	"testing"
)

// cacheDir is one compilation cache shared by the package's tests, so the Go
// guests compile once per run.
func cacheDir(t testing.TB) string {
	d := filepath.Join(os.TempDir(), "sluice-wasm-test-cache")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
