// Command authdeny is a test auth policy: it denies (403) clients whose
// address starts with the slot's "deny" config value, traps on stream
// "trap", and allows everything else.
package main

import (
	"strings"

	"github.com/sluicegw/sluice/sdk"
)

func auth(in *sdk.AuthInput) sdk.AuthOutput {
	if in.StreamID == "trap" {
		panic("asked to trap")
	}
	if p, ok := sdk.Config("deny"); ok && p != "" && strings.HasPrefix(in.Client, p) {
		return sdk.AuthOutput{Status: 403, Reason: "client " + in.Client + " is denied"}
	}
	return sdk.AuthOutput{Allow: true}
}

func init() { sdk.HandleAuth(auth) }

func main() {}
