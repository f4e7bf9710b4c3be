package policy

import "github.com/sluicegw/sluice/sdk/abi"

// AuthGrants is the built-in auth policy: it allows exactly what the
// gateway's JWT check granted, and denies the rest with the check that failed
// (401 without a verified token, 403 with one that does not grant the
// request). It is the auth slot's default module and native fallback, and the
// base a policy that adds rules of its own starts from.
func AuthGrants(in *abi.AuthInput) abi.AuthOutput {
	if in.Kind == abi.KindPublishEnd || in.Check == "" {
		return abi.AuthOutput{Allow: true}
	}
	status := 403
	if in.Token == nil {
		status = 401
	}
	return abi.AuthOutput{Status: status, Reason: "the token check failed: " + in.Check}
}
