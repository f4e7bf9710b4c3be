// Command build compiles the built-in policies to plugins/*.wasm, reproducibly:
// `go generate ./plugins` runs it.
package main

import (
	"fmt"
	"os"

	"github.com/sluicegw/sluice/internal/wasmbuild"
)

func main() {
	for _, name := range []string{"auth-grants", "route-hrw", "route-least-loaded", "throttle-m2"} {
		if err := wasmbuild.Build("./"+name, name+".wasm"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("built", name+".wasm")
	}
}
