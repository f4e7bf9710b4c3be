package agent

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

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
type Pool struct {
	// Memory is one node's memory limit: "auto", a percentage of auto ("120%"), or
	// a size ("1024m", "2g"). Default "auto". Enforced twice: the node's Go memory
	// limit, and the agent recycles a node whose RSS passes it.
	Memory string
	// Concurrent is the most node processes of the purpose; 0 derives it from the
	// memory budget, never above the CPU count. Recycling nodes do not count.
	Concurrent int
	// WaitQueue is the streams one node serves at once; 0 means no limit.
	WaitQueue int
	// Respawnable is the most nodes restarting at the same moment. Default 1.
	Respawnable int
	// Keepalive recycles nodes by count and age.
	Keepalive Keepalive
	// Recovery is the restarts after faults allowed per day (reset at local
	// midnight), like M2's rt.respawnable.recovery. Default 100.
	Recovery int
	// Intensity limits restarts in a short window: at most MaxRestarts within
	// Period (systemd's default is 5 in 10s), with exponential backoff between
	// restarts once the pool restarts repeatedly. Past it the pool is failed.
	Intensity Intensity
	// Warm is the nodes kept started with no stream, so the first stream does not
	// wait for a spawn. Default 1; -1 means none.
	Warm int
	// Procs is each node's GOMAXPROCS. Default 1: a pool scales across cores with
	// more node processes (concurrent), and one scheduler thread per node avoids the
	// cross-thread wake-ups that dominate a relay's CPU at media packet rates.
	Procs int
}

// Keepalive recycles nodes (M2's process.*.keepalive).
type Keepalive struct {
	MaxCount int           // streams served before a node is recycled; 0 = never
	MaxAge   time.Duration // age after which a node is recycled; 0 = never
	// TimeWait is how long a recycling node may keep its live streams before it is
	// stopped anyway; 0 = as long as they last.
	TimeWait time.Duration
}

// Intensity is a restart-intensity limit.
type Intensity struct {
	MaxRestarts int           // default 5
	Period      time.Duration // default 10s
}

// MemoryUsage mirrors M2's memoryUsage.
type MemoryUsage struct {
	TotalUsableRatio int // percent of system memory sluice may use; default 100
	WorkingRatio     int // percent of that for node processes; default 60
}

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

// DefaultPool is the relay pool's default: auto memory and concurrency, no limit of
// streams per node, one warm node, one respawn at a time, no recycling.
var DefaultPool = Pool{Memory: "auto", Respawnable: 1, Recovery: 100, Warm: 1,
	Intensity: Intensity{MaxRestarts: 5, Period: 10 * time.Second}}

var sizeRE = regexp.MustCompile(`^(?i)(\d+)([kmg]?)b?$`)

// parseMemory turns a Memory setting into bytes, given the auto value.
func parseMemory(s string, auto int64) (int64, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || strings.EqualFold(s, "auto"):
		return auto, nil
	case strings.HasSuffix(s, "%"):
		p, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
		if err != nil || p <= 0 || p > 1000 {
			return 0, fmt.Errorf("%q: a percentage of auto must be 1%%..1000%%", s)
		}
		return auto * int64(p) / 100, nil
	}
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q: want auto, a percentage of auto (120%%) or a size (1024m, 2g)", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	switch strings.ToLower(m[2]) {
	case "k":
		n <<= 10
	case "m":
		n <<= 20
	case "g":
		n <<= 30
	}
	if n < 4<<20 {
		return 0, fmt.Errorf("%q: a node needs at least 4m", s)
	}
	return n, nil
}

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
	next, err := parseSchedule(c.Inspection.Schedule)
	if err != nil {
		return c, fmt.Errorf("inspection.process.schedule: %w", err)
	}
	c.Inspection.next = next
	if len(c.Pools) == 0 {
		c.Pools = map[string]Pool{"relay": {}}
	}
	pools := make(map[string]Pool, len(c.Pools))
	for name, p := range c.Pools {
		p, err := p.withDefaults()
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

func (p Pool) withDefaults() (Pool, error) {
	d := DefaultPool
	if p.Memory == "" {
		p.Memory = d.Memory
	}
	if _, err := parseMemory(p.Memory, 1<<30); err != nil {
		return p, fmt.Errorf("memory: %w", err)
	}
	if p.Concurrent < 0 || p.Concurrent > 4096 {
		return p, fmt.Errorf("concurrent: %d is outside 0..4096 (0 = automatic)", p.Concurrent)
	}
	if p.WaitQueue < 0 {
		return p, fmt.Errorf("waitQueue: %d is negative (want an integer ≥ 0, 0 = no limit)", p.WaitQueue)
	}
	if p.Respawnable == 0 {
		p.Respawnable = d.Respawnable
	}
	if p.Respawnable < 0 {
		return p, fmt.Errorf("respawnable: %d is negative (want an integer ≥ 1)", p.Respawnable)
	}
	if p.Keepalive.MaxCount < 0 {
		return p, fmt.Errorf("keepalive.maxcount: %d is negative (want an integer ≥ 0, 0 = never)", p.Keepalive.MaxCount)
	}
	if p.Keepalive.MaxAge < 0 || p.Keepalive.TimeWait < 0 {
		return p, errors.New("keepalive: maxage and timewait must not be negative")
	}
	if p.Recovery == 0 {
		p.Recovery = d.Recovery
	}
	if p.Recovery < 0 {
		return p, fmt.Errorf("recovery: %d is negative (want an integer ≥ 1)", p.Recovery)
	}
	if p.Intensity.MaxRestarts == 0 {
		p.Intensity.MaxRestarts = d.Intensity.MaxRestarts
	}
	if p.Intensity.Period == 0 {
		p.Intensity.Period = d.Intensity.Period
	}
	if p.Intensity.MaxRestarts < 0 {
		return p, fmt.Errorf("intensity.maxRestarts: %d is negative (want an integer ≥ 0)", p.Intensity.MaxRestarts)
	}
	if p.Intensity.Period < 0 {
		return p, errors.New("intensity.period: must not be negative")
	}
	if p.Warm == 0 {
		p.Warm = d.Warm
	}
	if p.Procs == 0 {
		p.Procs = 1
	}
	if p.Procs < 0 || p.Procs > 1024 {
		return p, fmt.Errorf("procs: %d is outside 1..1024 (want an integer)", p.Procs)
	}
	if p.Warm < -1 {
		return p, fmt.Errorf("warm: %d is below -1 (want an integer ≥ -1, -1 = none)", p.Warm)
	}
	if p.Warm < 0 {
		p.Warm = 0
	}
	return p, nil
}

// autoMemory derives one node's "auto" memory limit as M2 does for its render
// workers, from the spare memory outside M2's own share:
//
//	working = total × totalUsableRatio% × workingRatio%
//	spare   = free − working
//	limit   = 1 GiB when spare ≥ 3 GiB, else 500 MiB
//
// total and free are the machine's memory and its available memory, in bytes.
func autoMemory(total, free int64, mu MemoryUsage) int64 {
	if free-workingMemory(total, mu) >= 3<<30 {
		return 1 << 30
	}
	return 500 << 20
}

// workingMemory is M2's memory for its own use: totalUsableRatio percent of the
// machine's memory, and workingRatio percent of that.
func workingMemory(total int64, mu MemoryUsage) int64 {
	return total * int64(mu.TotalUsableRatio) / 100 * int64(mu.WorkingRatio) / 100
}

// autoConcurrent derives a pool's process limit from the working memory budget
// and the node limit, never more than the CPU count.
func autoConcurrent(total int64, mu MemoryUsage, perNode int64) int {
	n := int(workingMemory(total, mu) / max(perNode, 1))
	return max(1, min(n, runtime.NumCPU()))
}

// Validate fills the defaults on a copy of c and reports the first invalid field.
func (c Config) Validate() (Config, error) { return c.withDefaults() }
