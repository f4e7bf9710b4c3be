// Package arrows holds the design's import rules (../../shared/DESIGN.md, "The
// parts"): which of sluice's packages may import which. Its test checks every
// package of the module against them, so an arrow pointing the wrong way fails
// `go test ./...`.
package arrows

import (
	"fmt"
	"strings"
)

// Module is the import path of sluice's module.
const Module = "github.com/sluicegw/sluice"

// rule says what packages under From may import of the module's own packages:
// paths under one of Allow. Every package matches the rule with the longest From.
type rule struct {
	From  string
	Allow []string
}

// rules are the arrows of the design. Paths are relative to Module; "x" covers x
// and everything under it.
var rules = []rule{
	{"cmd", []string{"cmd", "gateway", "agent", "wasm", "plugins", "internal", "sdk"}},
	// sdk/moqt is the MoQT wire contract, shared with the push client as sdk/abi
	// is shared with policies.
	{"gateway", []string{"gateway", "wasm", "internal", "sdk/abi", "sdk/moqt"}},
	{"agent", []string{"agent", "internal"}},
	{"wasm", []string{"wasm", "internal", "sdk/abi"}},
	// Test helpers that need the host run guests built with the SDK.
	{"wasm/wasmtest", []string{"wasm", "internal", "sdk"}},
	{"plugins", []string{"plugins", "sdk"}},
	// The generator of the committed built-ins is a build tool, linked into no
	// policy.
	{"plugins/internal/build", []string{"plugins", "internal/wasmbuild"}},
	// Examples are what policy authors copy: the SDK, and the policy library the
	// built-ins share (which itself imports only the SDK).
	{"examples", []string{"examples", "sdk", "plugins/policy"}},
	{"sdk", []string{"sdk"}},
	{"internal", []string{"internal", "sdk"}},
}

// stdOnly are the packages that may import nothing outside the module but the
// standard library: what policy authors and push clients build against. Each
// exception names the one outside module it may use.
var stdOnly = []string{"sdk"}

// stdExceptions: the push client speaks QUIC, which the standard library has not.
var stdExceptions = map[string]string{"sdk/push": "github.com/quic-go/quic-go"}

// Check reports the first rule an import from pkg to imp breaks, or nil. Both are
// full import paths.
func Check(pkg, imp string) error {
	from, ok := strings.CutPrefix(pkg, Module+"/")
	if !ok {
		return fmt.Errorf("%s is not in %s", pkg, Module)
	}
	to, ok := strings.CutPrefix(imp, Module+"/")
	if !ok {
		first, _, _ := strings.Cut(imp, "/")
		for _, s := range stdOnly {
			if ex, ok := stdExceptions[from]; ok && under(imp, ex) {
				continue
			}
			if under(from, s) && strings.Contains(first, ".") {
				return fmt.Errorf("%s imports %s: %s may import only the standard library and itself", from, imp, s)
			}
		}
		return nil
	}
	r, ok := ruleFor(from)
	if !ok {
		return fmt.Errorf("%s: no arrow rule covers it", pkg)
	}
	for _, a := range r.Allow {
		if under(to, a) {
			return nil
		}
	}
	return fmt.Errorf("%s imports %s: %s may import only %s", from, to, r.From, strings.Join(r.Allow, ", "))
}

func ruleFor(pkg string) (rule, bool) {
	best, found := rule{}, false
	for _, r := range rules {
		if under(pkg, r.From) && len(r.From) >= len(best.From) {
			best, found = r, true
		}
	}
	return best, found
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
