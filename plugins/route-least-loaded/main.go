// Command route-least-loaded is a built-in route policy: agents by relative load
// (see plugins/policy.RouteLeastLoaded). Built to route-least-loaded.wasm by
// `go generate ./plugins`.
package main

import (
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk"
)

func init() { sdk.HandleRoute(policy.RouteLeastLoaded) }

func main() {}
