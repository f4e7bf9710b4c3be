package agent

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"time"

	"github.com/sluicegw/sluice/agent/internal/m2"
	"github.com/sluicegw/sluice/agent/internal/services"
)

// Config configures an agent. The zero value of each field means its default.
type Config struct {
	// ID names the agent in the cluster and the API. Required.
	ID string
	// API is the agent API listen address (HTTPS, mutual TLS). Default
	// "127.0.0.1:7443"; port 0 picks one.
	API string
	// MediaHost is the address node processes bind their QUIC media listeners to
	// and gateways dial. Default: API's host when it names one (an address or
	// a host name, as in a container: where gateways reach the agent API, they
	// reach its nodes), else "127.0.0.1".
	MediaHost string
	// Pools configures node processes per purpose. Default: one "relay" pool with
	// DefaultPool's settings.
	Pools map[string]Pool
	// MemoryUsage is how much of the machine's memory node processes may use (M2's
	// memoryUsage), the base of "auto" memory limits.
	MemoryUsage MemoryUsage
	// QueueTimeout bounds how long an open request waits when every node is full.
	// Default 10s.
	QueueTimeout time.Duration
	// QueueLimit is the most requests waiting at once per pool; more are refused.
	// Default 64.
	QueueLimit int
	// DrainTimeout is how long live streams may run on after SIGTERM before the
	// nodes are stopped. Default 30s.
	DrainTimeout time.Duration
	// Inspection writes periodic process-table snapshots (M2's inspection.process).
	Inspection Inspection
	// Services are the operator's own per-stream services that gateways
	// proxy calls to (agent.services, agent.serviceHooks).
	Services Services
	// Tags are the operator's own serf tags (agent.tags: region, zone, gpu…),
	// which every route policy sees as the candidate's tags. Keys are 1..32 of
	// [a-z0-9_-], values 1..64 of [A-Za-z0-9._:/+-], MaxTagBytes in all, and
	// none may be a built-in tag. Default none.
	Tags map[string]string
	// NodeCommand is the program and leading arguments that start a node; the agent
	// appends "--purpose P". Default: this executable with "node".
	NodeCommand []string
}

// Pool is one purpose's process pool, with M2's setting names and meanings.
type Pool = m2.Pool

// Keepalive recycles nodes (M2's process.*.keepalive).
type Keepalive = m2.Keepalive

// Intensity is a restart-intensity limit.
type Intensity = m2.Intensity

// MemoryUsage mirrors M2's memoryUsage.
type MemoryUsage = m2.Usage

// Inspection mirrors M2's inspection.process: periodic process-table snapshots.
type Inspection struct {
	Enable    bool // default false (M2 enables it; sluice does not write files unasked)
	Retention int  // snapshots kept; default 14
	// Schedule is when snapshots are written: a cron schedule, six fields with
	// seconds first as in M2 ("5 * * * * *") or a classic five-field line (seconds
	// 0), day of month and day of week matched as cron does (either, when both are
	// restricted); or a Go duration of at least 1s between snapshots. Default
	// "5 * * * * *".
	Schedule string
	// Dir is where snapshots go; default "log/process" under the working directory.
	Dir string

	next func(time.Time) time.Time // from Schedule
}

// DefaultPool is the relay pool's default (m2.Default).
var DefaultPool = m2.Default

// Services are the operator's own per-stream services beside the agent
// (agent.services, agent.serviceHooks, agent.serviceIdle).
type Services = services.Config

// ServiceHooks are the paths on the default service called when a stream
// comes to the agent or leaves it.
type ServiceHooks = services.Hooks

// withDefaults fills defaults on a copy and validates. Errors name the field.
func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		return c, errors.New("agent: id is required")
	}
	if c.API == "" {
		c.API = "127.0.0.1:7443"
	}
	if c.MediaHost == "" {
		c.MediaHost = apiHost(c.API)
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = 10 * time.Second
	}
	if c.QueueLimit == 0 {
		c.QueueLimit = 64
	}
	if c.QueueLimit < 0 {
		return c, fmt.Errorf("agent.queueLimit: %d is negative (want an integer ≥ 0, 0 = 64)", c.QueueLimit)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.MemoryUsage.TotalUsableRatio == 0 {
		c.MemoryUsage.TotalUsableRatio = 100
	}
	if c.MemoryUsage.WorkingRatio == 0 {
		c.MemoryUsage.WorkingRatio = 60
	}
	if r := c.MemoryUsage.TotalUsableRatio; r < 1 || r > 100 {
		return c, fmt.Errorf("memoryUsage.totalUsableRatio: %d is outside 1..100 (want a percentage)", r)
	}
	if r := c.MemoryUsage.WorkingRatio; r < 1 || r > 100 {
		return c, fmt.Errorf("memoryUsage.workingRatio: %d is outside 1..100 (want a percentage)", r)
	}
	if c.Inspection.Retention == 0 {
		c.Inspection.Retention = 14
	}
	if c.Inspection.Schedule == "" {
		c.Inspection.Schedule = "5 * * * * *"
	}
	if c.Inspection.Dir == "" {
		c.Inspection.Dir = filepath.Join("log", "process")
	}
	if c.Inspection.Retention < 0 {
		return c, fmt.Errorf("inspection.process.retention: %d is negative (want an integer ≥ 1)", c.Inspection.Retention)
	}
	next, err := m2.ParseSchedule(c.Inspection.Schedule)
	if err != nil {
		return c, fmt.Errorf("inspection.process.schedule: %w", err)
	}
	c.Inspection.next = next
	if len(c.Pools) == 0 {
		c.Pools = map[string]Pool{"relay": {}}
	}
	pools := make(map[string]Pool, len(c.Pools))
	for name, p := range c.Pools {
		p, err := p.WithDefaults()
		if err != nil {
			return c, fmt.Errorf("process.%s.%w", name, err)
		}
		pools[name] = p
	}
	c.Pools = pools
	if err := checkTags(c.Tags); err != nil {
		return c, err
	}
	c.Tags = maps.Clone(c.Tags) // the caller's map may change; the agent's does not
	if c.Services, err = c.Services.WithDefaults(); err != nil {
		return c, err
	}
	return c, nil
}

// apiHost is the host of an API address, or 127.0.0.1 when it has none a
// gateway could dial (a wildcard).
func apiHost(api string) string {
	h, _, err := net.SplitHostPort(api)
	if ip := net.ParseIP(h); err != nil || h == "" || ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return h
}

// Validate fills the defaults on a copy of c and reports the first invalid field.
func (c Config) Validate() (Config, error) { return c.withDefaults() }
