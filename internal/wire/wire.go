// Package wire holds the internal contracts between sluice processes that do not
// import each other: the agent API that gateways call (JSON over HTTPS with mutual
// TLS) and the proxy tunnels on the same port (tunnel.go), the control channel
// between an agent and its node processes, and the serf tag keys every member
// publishes.
//
// Everything here is a wire format: fields are added, never renamed or re-typed.
package wire

import "time"

// Member tag keys. Encoded tags must stay under serf's 512-byte limit, so keys are
// short and values compact.
const (
	TagRole     = "role" // comma list of "gateway", "agent"
	TagID       = "id"   // stable id of the member (agent id or gateway id)
	TagAPI      = "api"  // agent API address host:port (agents)
	TagHTTP     = "http" // public HTTP address host:port (gateways)
	TagPurposes = "purp" // comma list of node purposes an agent serves
	TagCapacity = "cap"  // streams an agent may serve in all
	TagLoad     = "load" // streams an agent serves now
	TagQueue    = "q"    // open requests waiting in the agent's queue
	// TagConcurrent is the node processes an agent's healthy pools may run
	// (M2's process.*.concurrent, summed): the throttle's concurrent is its
	// sum over the agents a stream may be placed on.
	TagConcurrent = "conc"
	TagCPU        = "cpu"    // agent host CPU use, percent, integer
	TagMem        = "mem"    // agent memory in use, MiB
	TagState      = "state"  // StateServing or StateDraining
	TagFailed     = "failed" // comma list of purposes whose pool is failed
	TagVersion    = "v"      // sluice version
)

// Roles.
const (
	RoleGateway = "gateway"
	RoleAgent   = "agent"
)

// Member states.
const (
	StateServing  = "serving"
	StateDraining = "draining"
)

// Session kinds.
const (
	KindPublish = "publish"
	KindPlay    = "play"
	KindProxy   = "proxy" // the route policy places a stream for proxied calls
)

// Agent API paths, relative to https://{TagAPI}.
const (
	PathSessions = "/agent/v1/sessions"          // POST OpenRequest → OpenResponse
	PathSession  = "/agent/v1/sessions/{id}"     // DELETE closes
	PathStreams  = "/agent/v1/streams"           // GET → []StreamInfo, every live stream on the agent
	PathStream   = "/agent/v1/streams/{id}"      // GET → StreamInfo, 404 when not here
	PathStatus   = "/agent/v1/status"            // GET → Status
	PathNodes    = "/agent/v1/nodes"             // POST NodeStartRequest → NodeInfo
	PathNode     = "/agent/v1/nodes/{node}"      // GET → NodeInfo, DELETE stops
	PathNodeLogs = "/agent/v1/nodes/{node}/logs" // GET, ?follow=1 streams
	PathEvents   = "/agent/v1/events"            // GET, a stream of Event, one JSON per line

	// PathProxyStream: GET → ProxyStream when the agent carries the stream's
	// media or holds it for proxied calls, 404 otherwise; PUT holds it (the
	// route policy chose this agent), calling the services' add hook.
	// The calls themselves go through tunnels (ALPNTunnel), not a path.
	PathProxyStream = "/agent/v1/proxy-streams/{id}"
)

// ProxyStream is an agent's answer about a stream for the proxy.
type ProxyStream struct {
	Stream string `json:"stream"`
	Agent  string `json:"agent"`
	Media  bool   `json:"media"` // the stream's media is live on this agent
}

// ServiceHook is the body of the add and remove hooks an agent calls on its
// default service when a stream comes to it or leaves it.
type ServiceHook struct {
	Stream string `json:"stream"`
	Agent  string `json:"agent"`
	Node   string `json:"node,omitempty"`  // the node carrying its media, if any
	Media  string `json:"media,omitempty"` // that node's media link address
	Reason string `json:"reason"`          // "media", "proxy"; on remove: "ended", "idle", "shutdown"
}

// OpenRequest asks an agent for a node to carry one side of a stream. For a
// publish, the agent finds or spawns a node and records the stream on it; for a
// play, it answers with the node that carries the stream (404 if none).
type OpenRequest struct {
	Stream  string `json:"stream"`
	Purpose string `json:"purpose"` // "" means "relay"
	Kind    string `json:"kind"`    // KindPublish or KindPlay
	Gateway string `json:"gateway"` // id of the calling gateway, for the session table
	// WaitMillis bounds how long the request may wait in the agent's queue when
	// every node is full; 0 means the agent's default.
	WaitMillis int `json:"waitMillis,omitempty"`
}

// OpenResponse tells a gateway where to send or read a stream's media.
type OpenResponse struct {
	Session string `json:"session"` // id to close with DELETE PathSession
	Agent   string `json:"agent"`
	Node    string `json:"node"`  // node id, stable for the node's life
	Media   string `json:"media"` // QUIC media address host:port of the node
	// Epoch changes whenever the node behind the stream is replaced, so a gateway
	// re-attaching can tell a new node from the one it lost.
	Epoch uint64 `json:"epoch"`
}

// StreamInfo is an agent's view of one live stream.
type StreamInfo struct {
	Stream  string    `json:"stream"`
	Agent   string    `json:"agent"`
	Node    string    `json:"node"`
	Media   string    `json:"media"`
	Epoch   uint64    `json:"epoch"`
	Since   time.Time `json:"since"`
	Viewers int       `json:"viewers"` // play sessions open on this agent
}

// Event is a line of the agent's event stream. Gateways follow it to drop a
// media link to a dead node at once rather than after the link's idle timeout.
type Event struct {
	T    string `json:"t"`              // EventNodeDown, or EventKeepalive
	Node string `json:"node,omitempty"` // the node
}

// Event types.
const (
	EventNodeDown  = "node-down"
	EventKeepalive = "keepalive"
)

// NodeStartRequest starts a node of a purpose on an agent, outside any stream.
type NodeStartRequest struct {
	Purpose string `json:"purpose"`
}

// NodeInfo describes one node process.
type NodeInfo struct {
	ID        string    `json:"id"`
	Agent     string    `json:"agent"`
	Purpose   string    `json:"purpose"`
	PID       int       `json:"pid"`
	State     string    `json:"state"` // starting, running, recycling, stopped, failed
	StartedAt time.Time `json:"startedAt"`
	CPU       float64   `json:"cpu"` // percent of one core, last interval
	RSS       int64     `json:"rss"` // bytes
	Streams   int       `json:"streams"`
	Served    int       `json:"served"` // streams served since start (keepalive.maxcount)
	Media     string    `json:"media"`
}

// Node control channel. An agent starts `sluice node --purpose P` with one end of a
// unix socketpair as file descriptor 3 (ControlFD). Both sides write one JSON
// ControlMsg per line. The agent speaks first with MsgInit; the node answers
// MsgReady once its media listener is up, then MsgBeat every BeatInterval.
const (
	ControlFD    = 3
	BeatInterval = time.Second
)

// Control message types.
const (
	MsgInit  = "init"  // agent → node: identity and listen address
	MsgReady = "ready" // node → agent: media address
	MsgBeat  = "beat"  // node → agent: figures
	MsgDrain = "drain" // agent → node: finish live streams, take no more
	MsgStop  = "stop"  // agent → node: exit now
)

// ControlMsg is one line on the node control channel. Fields not used by a type
// are empty.
type ControlMsg struct {
	T string `json:"t"`
	// MsgInit
	NodeID   string `json:"node,omitempty"`
	Listen   string `json:"listen,omitempty"` // host:port for the QUIC media listener; port 0 picks one
	CertPEM  []byte `json:"cert,omitempty"`
	KeyPEM   []byte `json:"key,omitempty"`
	CAPEM    []byte `json:"ca,omitempty"`
	MemLimit int64  `json:"memLimit,omitempty"` // bytes, becomes the node's Go memory limit; 0 = none
	// MsgReady
	Media string `json:"media,omitempty"`
	PID   int    `json:"pid,omitempty"`
	// MsgBeat
	Streams int     `json:"streams,omitempty"`
	RSS     int64   `json:"rss,omitempty"`
	CPU     float64 `json:"cpu,omitempty"`
}

// Status is an agent's process table, the rows of `sluice status`.
type Status struct {
	Agent   string        `json:"agent"`
	State   string        `json:"state"` // StateServing or StateDraining
	PID     int           `json:"pid"`
	Started time.Time     `json:"started"`
	CPU     float64       `json:"cpu"` // percent of one core
	RSS     int64         `json:"rss"` // bytes
	Summary StatusSummary `json:"summary"`
	Pools   []PoolStatus  `json:"pools"`
	Nodes   []NodeInfo    `json:"nodes"`
}

// StatusSummary is the summary line of `sluice status`, as M2 prints it.
type StatusSummary struct {
	Running      int   `json:"running"`  // node processes serving streams
	Sleeping     int   `json:"sleeping"` // running node processes with no stream; starting and recycling ones count as neither
	Respawns     int   `json:"respawns"` // restarts after a fault, since start
	MemActive    int64 `json:"memActive"`
	MemAvailable int64 `json:"memAvailable"`
}

// PoolStatus describes one purpose's pool on an agent.
type PoolStatus struct {
	Purpose       string `json:"purpose"`
	Nodes         int    `json:"nodes"`
	Concurrent    int    `json:"concurrent"` // limit
	WaitQueue     int    `json:"waitQueue"`  // streams per node, 0 = no limit
	Streams       int    `json:"streams"`
	Queued        int    `json:"queued"`
	MemoryLimit   int64  `json:"memoryLimit"` // bytes per node
	RestartsToday int    `json:"restartsToday"`
	Failed        bool   `json:"failed"`
	Reason        string `json:"reason,omitempty"`
}
