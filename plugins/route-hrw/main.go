// Command route-hrw is the built-in route policy: rendezvous hashing with bounded
// load (see plugins/policy.RouteHRW). Built to route-hrw.wasm by `go generate ./plugins`.
package main

import (
	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk"
)

func init() { sdk.HandleRoute(policy.RouteHRW) }

func main() {}
