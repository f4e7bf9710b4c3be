// Package plugins embeds sluice's built-in Wasm policies, built from the
// sub-directories with the SDK. The .wasm files are committed; `go generate
// ./plugins` (or `task plugins`) rebuilds them byte for byte, and a test fails
// when a committed module differs from a fresh build.
package plugins

import (
	"embed"
	"fmt"
)

//go:generate go run ./internal/build

//go:embed *.wasm
var modules embed.FS

// Names lists the built-in policies.
var Names = []string{"auth-grants", "route-hrw", "route-least-loaded", "throttle-m2"}

// Builtin returns a built-in module by name.
func Builtin(name string) ([]byte, error) {
	b, err := modules.ReadFile(name + ".wasm")
	if err != nil {
		return nil, fmt.Errorf("plugins: no built-in policy %q (have %v)", name, Names)
	}
	return b, nil
}
