package agent

import "errors"

// Errors callers branch on; the agent API maps each to a status and a problem type
// (problemFor in api.go).
var (
	ErrNotLive     = errors.New("stream is not live on this agent")
	ErrBusy        = errors.New("stream already has a publisher from another gateway")
	ErrQueueFull   = errors.New("every node is busy and the wait queue is full")
	ErrQueueTime   = errors.New("every node stayed busy for the whole queue timeout")
	ErrPoolFailed  = errors.New("the pool is failed: it crashed past its restart budget")
	ErrDraining    = errors.New("the agent is draining and takes no new streams")
	ErrNoPurpose   = errors.New("this agent has no pool for that purpose")
	ErrNoSuchNode  = errors.New("no such node")
	ErrNoSuchSess  = errors.New("no such session")
	ErrNodeTimeout = errors.New("the node did not become ready in time")
)
