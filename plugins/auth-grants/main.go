// Command auth-grants is the built-in auth policy: it allows what the
// gateway's JWT check granted (see plugins/policy.AuthGrants). Built to
// auth-grants.wasm by `go generate ./plugins`.
package main

import (
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk"
)

func init() { sdk.HandleAuth(policy.AuthGrants) }

func main() {}
