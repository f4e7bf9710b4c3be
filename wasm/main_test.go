package wasm

import (
	"os"
	"testing"
)

// TestMain makes a use of freed guest memory crash the tests: Free unmaps at
// once instead of leaving zeros behind for unmapDelay, which in a running
// gateway keeps such a bug from faulting the process.
func TestMain(m *testing.M) {
	unmapDelay = 0
	os.Exit(m.Run())
}
