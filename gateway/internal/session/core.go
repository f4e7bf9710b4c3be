// Package session is the gateway's protocol-neutral core. A stream on a gateway
// has at most one publication — a protocol's Source (a WHIP publisher, a MoQ
// publisher) carried to the stream's node — and at most one subscription: a link
// from the node fanned out to the Sinks of every protocol its local viewers use.
// Admission (the throttle policy), placement (the route policy and the cluster's
// agents), the media link to the node (dial, re-attach after a node is replaced
// or an agent lost, keyframe requests) and the fan-out are here, once; a protocol
// adds only a Source or a Sink, and answers its clients in its own terms.
//
// The core keeps no state another gateway needs: where a stream is lives with the
// agent that carries it (RATIONALE.md).
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway/internal/webhook"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/pki"
)

// Config configures the core. Zero values mean the defaults given.
type Config struct {
	// ID names the gateway to agents and nodes. Required.
	ID string
	// Purpose is the node purpose that carries media streams. Default "relay".
	Purpose string
	// TrackWait is how long a new viewer waits for a just-started stream to
	// announce all of its tracks. Default 3s.
	TrackWait time.Duration
	// Events hears the streams' events (stream.started, viewer.joined, …),
	// from the core's and the protocols' goroutines; it must not block.
	// Default: none.
	Events func(webhook.Event)
}

func (c Config) withDefaults() Config {
	if c.Purpose == "" {
		c.Purpose = "relay"
	}
	if c.TrackWait == 0 {
		c.TrackWait = 3 * time.Second
	}
	return c
}

// Core is one gateway's streams.
type Core struct {
	cfg     Config
	log     *slog.Logger
	cluster *cluster.Cluster
	id      *pki.Identity
	agents  *AgentClient
	policy  Policy
	m       *coreMetrics
	media   *medialink.Endpoint // the one socket of every media link to nodes

	mu       sync.Mutex
	pubs     map[string]*Publication  // stream id → publication through this gateway
	subs     map[string]*Subscription // stream id → shared subscription on this gateway
	watching map[string]bool          // agent API addresses whose events are followed
	links    linkSet                  // every node link, for the agents' events
	preloads map[string]placement     // preloaded streams this gateway holds, with no publisher yet

	rules       atomic.Pointer[[]StreamRule] // SetStreams
	preloadOnce sync.Once                    // starts the preloader
	preloadKick chan struct{}                // wakes it after SetStreams
	preloadMu   sync.Mutex                   // held while a preloaded stream is placed or taken

	viewMu sync.Mutex
	view   *agentList // built at the cluster change count view.at

	draining atomic.Bool // takes no new publication or subscription

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// New starts a core. It needs the cluster membership (to find agents), the member
// identity (mutual TLS on the links to agents and nodes) and the policy (nil:
// admit everything and offer the eligible agents in membership order). Its
// metrics go in set.
func New(cfg Config, c *cluster.Cluster, id *pki.Identity, pol Policy, log *slog.Logger, set *metrics.Set) (*Core, error) {
	cfg = cfg.withDefaults()
	if cfg.ID == "" {
		return nil, errors.New("session: no gateway id")
	}
	if pol == nil {
		pol = eligiblePolicy{}
	}
	if set == nil {
		set = metrics.NewSet()
	}
	core := &Core{cfg: cfg, log: log, cluster: c, id: id, agents: newAgentClient(id), policy: pol,
		pubs: map[string]*Publication{}, subs: map[string]*Subscription{}, watching: map[string]bool{},
		preloads: map[string]placement{}, preloadKick: make(chan struct{}, 1)}
	core.ctx, core.cancel = context.WithCancel(context.Background())
	core.m = newCoreMetrics(set, core)
	// Media links leave from one socket of every interface, as quic-go's own
	// dialling would; their media paths come back to it.
	media, err := medialink.NewEndpoint(":0")
	if err != nil {
		return nil, fmt.Errorf("session: media endpoint: %w", err)
	}
	if err := media.BufferErr(); err != nil {
		log.Warn("session: media socket buffers are small; expect loss under load", "err", err)
	}
	core.media = media
	core.goOwned(func() { _ = media.Serve(core.ctx) })
	return core, nil
}

// Close ends every link and waits for the core's goroutines. Protocols close
// their own sessions first. It is safe to call twice.
func (c *Core) Close() {
	c.closed.Do(func() {
		c.cancel()
		c.wg.Wait()
		_ = c.media.Close()
		c.agents.close()
	})
}

// Drain makes the core refuse new publications and subscriptions with a 503
// "draining" Error; live ones go on until Close.
func (c *Core) Drain() { c.draining.Store(true) }

// Draining says whether Drain was called.
func (c *Core) Draining() bool { return c.draining.Load() }

// errDraining is the refusal of a new session while the gateway drains.
var errDraining = &Error{Status: http.StatusServiceUnavailable, Kind: "draining",
	Title: "The gateway is draining", Detail: "it is shutting down and takes no new session; retry, and another gateway will take it"}

// LiveSessions is the publications and viewers this gateway carries now.
func (c *Core) LiveSessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.pubs)
	for _, s := range c.subs {
		s.mu.Lock()
		n += s.viewers
		s.mu.Unlock()
	}
	return n
}

// Agents is the mutual-TLS client of the agents' API, for the operator API.
func (c *Core) Agents() *AgentClient { return c.agents }

// Refused counts a request a protocol refused after admission.
func (c *Core) Refused() { c.m.refused.Inc() }

// emit tells Config.Events of ev.
func (c *Core) emit(ev webhook.Event) {
	if c.cfg.Events != nil {
		c.cfg.Events(ev)
	}
}

// goOwned runs f on a goroutine owned by the core; Close waits for it.
func (c *Core) goOwned(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Error is a refusal a protocol answers in its own terms: an HTTP problem for
// WHIP and WHEP, an error code for MoQ. Kind is stable (the problem type); Status
// is the HTTP status that fits.
type Error struct {
	Status              int
	Kind, Title, Detail string
}

func (e *Error) Error() string { return e.Title + ": " + e.Detail }

// ErrNotLive is returned when a stream is published nowhere in the cluster.
var ErrNotLive = errors.New("stream is not live")

func errNotLiveWithin(wait time.Duration) error {
	return fmt.Errorf("%w: no tracks announced within %s", ErrNotLive, wait)
}
