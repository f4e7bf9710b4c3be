// Command tenant-quota is an example auth policy: each tenant (a token's
// "tenant" claim, else its subject) may publish at most "max-streams"
// streams at once (config, default 2; "max-streams.TENANT" for one tenant).
// The count lives in the slot's shared store, so every instance of the policy
// sees it; it goes down when the gateway tells the policy that a publish it
// allowed is over (kind publish-end). Plays, and publishes the JWT check did
// not grant, are decided as the built-in auth policy decides them.
//
// Run it after the JWT check (auth.policy: after):
//
//	sluice plugin build examples/plugins/tenant-quota -o quota.wasm
//	curl -X PUT --data-binary @quota.wasm http://127.0.0.1:8080/v1/plugins/auth
package main

import (
	"strconv"

	"github.com/sluicegw/sluice/plugins/policy"
	"github.com/sluicegw/sluice/sdk"
	"github.com/sluicegw/sluice/sdk/abi"
)

func tenantOf(c *sdk.TokenClaims) string {
	if c.Tenant != "" {
		return c.Tenant
	}
	return c.Subject
}

func auth(in *sdk.AuthInput) sdk.AuthOutput {
	if in.Token == nil || in.Check != "" || in.Kind == abi.OpPlay {
		return policy.AuthGrants(in)
	}
	tenant := tenantOf(in.Token)
	key := "streams/" + tenant
	if in.Kind == sdk.KindPublishEnd {
		if sdk.KVAdd(key, -1) < 0 {
			sdk.KVSet(key, 0)
		}
		return sdk.AuthOutput{Allow: true}
	}
	limit := sdk.ConfigInt("max-streams."+tenant, sdk.ConfigInt("max-streams", 2))
	if n := sdk.KVAdd(key, 1); n > int64(limit) {
		sdk.KVAdd(key, -1)
		sdk.MetricAdd("quota_denials", 1)
		return sdk.AuthOutput{Status: 429, Reason: "tenant " + tenant + " already publishes " + strconv.Itoa(limit) + " streams"}
	}
	return sdk.AuthOutput{Allow: true}
}

func init() { sdk.HandleAuth(auth) }

func main() {}
