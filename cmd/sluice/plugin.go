package main

import (
	"context"
	"fmt"
	"io"
)

// runPlugin is replaced by the policy tooling (issue 3).
func runPlugin(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sluice plugin: not available in this build")
	return 2
}
