// Package wasmbuild builds a Go policy into a Wasm module the way sluice expects
// (a wasip1 reactor), reproducibly: the same sources and Go version give the same
// bytes.
package wasmbuild

import (
	"fmt"
	"os"
	"os/exec"
)

// Args are the go build arguments for a policy module.
var Args = []string{"build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

// Build compiles the Go package dir into out.
func Build(dir, out string) error {
	cmd := exec.Command("go", append(append([]string{}, Args...), "-o", out, dir)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", dir, err, b)
	}
	return nil
}
