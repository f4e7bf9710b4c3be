package session

import (
	"context"

	"github.com/sluicegw/sluice/sdk/abi"
)

// Policy makes the gateway's two decisions: which agents may carry a stream, in
// order of preference, and whether a request is admitted at all. A Policy reads
// its input and does not modify it: the candidates are shared between
// decisions. The policy host (package wasm) is the Policy of a running sluice.
type Policy interface {
	Route(ctx context.Context, in *RouteInput) (RouteOutput, error)
	Throttle(ctx context.Context, in *ThrottleInput) (ThrottleOutput, error)
}

// The decision types are the policy ABI's (package abi), so a Wasm host
// satisfies Policy without conversions.
type (
	RouteInput     = abi.RouteInput
	Candidate      = abi.Candidate
	RouteOutput    = abi.RouteOutput
	Rejection      = abi.Rejection
	ThrottleInput  = abi.ThrottleInput
	PoolFigures    = abi.PoolFigures
	ThrottleOutput = abi.ThrottleOutput
)

// Throttle actions.
const (
	Admit    = abi.Admit
	Queue    = abi.Queue
	Reject   = abi.Reject
	Redirect = abi.Redirect
	Origin   = abi.Origin
)

// eligiblePolicy is the Policy of a gateway built without WithPolicy: it admits
// everything and offers every eligible agent in membership order. It knows no
// particular policy; a running sluice always passes its policy host.
type eligiblePolicy struct{}

func (eligiblePolicy) Throttle(context.Context, *ThrottleInput) (ThrottleOutput, error) {
	return ThrottleOutput{Action: Admit}, nil
}

func (eligiblePolicy) Route(_ context.Context, in *RouteInput) (RouteOutput, error) {
	var out RouteOutput
	for i := range in.Candidates {
		if cand := &in.Candidates[i]; in.Eligible(cand) {
			out.Agents = append(out.Agents, cand.ID)
		}
	}
	return out, nil
}
