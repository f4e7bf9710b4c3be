// Package wasmbuild builds a Go policy into a Wasm module the way sluice expects
// (a wasip1 reactor), reproducibly: the same sources and Go version give the same
// bytes.
package wasmbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Args are the go build arguments for a policy module.
var Args = []string{"build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

// Build compiles the Go package in dir into out. It runs in dir, so dir may lie
// in any module (a policy author's own, with the SDK as a dependency).
func Build(dir, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.Command("go", append(append([]string{}, Args...), "-o", abs, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", dir, err, b)
	}
	return nil
}
