package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procstat"
	"github.com/sluicegw/sluice/internal/wire"
)

// Manager is the agent's node manager: OWT's NodeManager operations — getNode
// (Open), recycleNode (RecycleNode), queryNode (QueryNode) — over per-purpose
// pools of node processes. It places streams; the work is done by its parts:
//
//   - pool (pool.go): one purpose's limits, wait queue and restart budget;
//   - supervisor (supervisor.go): the node processes, their health, replacement
//     and keepalive recycling;
//   - streamTable (streams.go): the live streams and the gateways' sessions on
//     them, each stream linked to its node;
//   - eventHub (events.go): the event stream gateways follow.
//
// Locks. mu, the state lock, guards the pools' mutable fields, the supervisor's
// node table and the nodes' mutable fields, the stream table, and draining. They
// share one lock because placing a stream decides from all of them at once (does
// the stream still live, is the pool failed, which node has room, may the pool
// grow, who waits first) and a node's death changes all of them at once; with a
// lock each, every such path would take every lock anyway. The hub's lock and a
// node's write lock (nodeProc.wmu) are leaves taken with mu held or alone, never
// the other way round; a node's log ring has its own leaf lock. Nothing waits for
// another goroutine or a process's exit with mu held (see RATIONALE.md).
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex       // the state lock; see above
	pools    map[string]*pool // by purpose; the keys are fixed at newManager
	sup      *supervisor
	streams  streamTable
	draining bool // takes no new stream

	events eventHub       // its own lock
	loop   sync.WaitGroup // the supervision loop
}

func newManager(cfg Config, ident *pki.Identity, log *slog.Logger) *Manager {
	total, free := procstat.MemInfo()
	m := &Manager{cfg: cfg, log: log, pools: map[string]*pool{}, streams: newStreamTable()}
	for name, pc := range cfg.Pools {
		lim, conc := pc.Limits(total, free, cfg.MemoryUsage)
		m.pools[name] = newPool(name, pc, lim, conc)
	}
	m.sup = &supervisor{mu: &m.mu, agent: cfg.ID, command: cfg.NodeCommand, ident: ident, mediaHost: cfg.MediaHost, log: log,
		pools: m.pools, streams: &m.streams, events: &m.events, changed: make(chan struct{}, 1), nodes: map[string]*nodeProc{}}
	return m
}

// start spawns each pool's warm nodes and runs supervision until ctx ends.
func (m *Manager) start(ctx context.Context) {
	m.mu.Lock()
	m.sup.warmUpLocked()
	m.mu.Unlock()
	m.loop.Add(1)
	go func() {
		defer m.loop.Done()
		m.supervise(ctx)
	}()
}

// supervise runs the supervision tick every 100 ms, or sooner when capacity may
// have freed: the nodes' health and keepalive, warm nodes, and the wait queues.
func (m *Manager) supervise(ctx context.Context) {
	// 100 ms: a hung node is killed at most 3.1 s after its last heartbeat.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.sup.changed:
		}
		m.mu.Lock()
		now := time.Now()
		m.sup.checkLocked(now)
		m.sup.keepWarmLocked(now, !m.draining)
		m.serveQueuesLocked()
		m.mu.Unlock()
	}
}

// serveQueuesLocked wakes the first waiter of each pool that has room now.
func (m *Manager) serveQueuesLocked() {
	for _, p := range m.pools {
		if len(p.queue) > 0 && m.sup.hasRoomLocked(p) {
			p.wakeFirst()
		}
	}
}

// Open is getNode for a stream: a publish finds or makes the stream's node, a play
// finds the node that carries it. It waits for the node to be ready, in the pool's
// queue first if every node is full.
func (m *Manager) Open(ctx context.Context, req wire.OpenRequest) (wire.OpenResponse, error) {
	if req.Purpose == "" {
		req.Purpose = "relay"
	}
	m.mu.Lock()
	p, s, err := m.admitLocked(req)
	m.mu.Unlock()
	if err != nil {
		return wire.OpenResponse{}, err
	}
	wait := m.cfg.QueueTimeout
	if req.WaitMillis > 0 {
		wait = time.Duration(req.WaitMillis) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	n, err := m.nodeFor(ctx, p, s)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if req.Kind == wire.KindPublish {
			m.streams.abandon(s)
		}
		return wire.OpenResponse{}, err
	}
	sess := m.streams.open(s, req.Kind, req.Gateway)
	return wire.OpenResponse{Session: sess.id, Agent: m.cfg.ID, Node: n.id, Media: n.media, Epoch: s.epoch}, nil
}

// admitLocked finds req's pool and stream: a play needs the stream live; a publish
// starts it unless another gateway publishes it or the agent is draining.
func (m *Manager) admitLocked(req wire.OpenRequest) (*pool, *streamEntry, error) {
	p := m.pools[req.Purpose]
	if p == nil {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoPurpose, req.Purpose)
	}
	s := m.streams.get(req.Stream)
	switch req.Kind {
	case wire.KindPlay:
		if s == nil {
			return nil, nil, ErrNotLive
		}
	case wire.KindPublish:
		if s != nil && s.publisher != req.Gateway {
			return nil, nil, ErrBusy
		}
		if s == nil {
			if m.draining {
				return nil, nil, ErrDraining
			}
			s = m.streams.add(req.Stream, req.Purpose, req.Gateway, time.Now())
		}
	default:
		return nil, nil, fmt.Errorf("unknown session kind %q", req.Kind)
	}
	return p, s, nil
}

// nodeFor returns the stream's ready node, placing it on one (or queueing for
// room) if it has none.
func (m *Manager) nodeFor(ctx context.Context, p *pool, s *streamEntry) (*nodeProc, error) {
	woken := false
	for {
		m.mu.Lock()
		if !m.streams.has(s) {
			m.mu.Unlock()
			return nil, ErrNotLive
		}
		n := s.node
		if n == nil || n.state == nodeStopped {
			if p.failed != "" {
				m.mu.Unlock()
				return nil, fmt.Errorf("%w (%s)", ErrPoolFailed, p.failed)
			}
			var err error
			if n, err = m.placeLocked(p, s, woken); err != nil {
				m.mu.Unlock()
				return nil, err
			}
		}
		if n == nil {
			if err := m.queue(ctx, p); err != nil { // unlocks mu
				return nil, err
			}
			woken = true
			continue // room was made for us: take it ahead of the rest of the queue
		}
		m.mu.Unlock()
		ready, err := m.waitReady(ctx, n)
		if err != nil {
			return nil, err
		}
		if ready {
			return n, nil
		}
		// It died before it was ready: loop; the stream moves on.
		select {
		case <-ctx.Done():
			return nil, ErrNodeTimeout
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// queue waits in p's queue until room is made or ctx ends. mu is held on entry
// and released.
func (m *Manager) queue(ctx context.Context, p *pool) error {
	w := &waiter{ready: make(chan struct{}, 1)}
	if !p.enqueue(w, m.cfg.QueueLimit) {
		m.mu.Unlock()
		return ErrQueueFull
	}
	m.mu.Unlock()
	m.sup.signal()
	select {
	case <-ctx.Done():
		m.mu.Lock()
		p.leave(w)
		m.mu.Unlock()
		select {
		case <-w.ready: // served just now; let the next one have it
			m.sup.signal()
		default:
		}
		return fmt.Errorf("%w (%s)", ErrQueueTime, m.cfg.QueueTimeout)
	case <-w.ready:
		return nil
	}
}

// waitReady waits for n to be ready and says whether it is up with a media
// address (it may have died first).
func (m *Manager) waitReady(ctx context.Context, n *nodeProc) (bool, error) {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return false, ErrNodeTimeout
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return (n.state == nodeRunning || n.state == nodeRecycling) && n.media != "", nil
}

// placeLocked puts s on the node of p with room and the fewest streams, or on a
// new node when every node is full and the pool may grow. It returns nil, nil to
// mean "queue".
func (m *Manager) placeLocked(p *pool, s *streamEntry, woken bool) (*nodeProc, error) {
	if len(p.queue) > 0 && !woken && s.pubSess == "" { // live streams re-attaching go first
		// Others are waiting first: a new stream joins the queue behind them.
		return nil, nil
	}
	best, open := m.sup.pickLocked(p)
	if best == nil {
		if open >= p.concurrent {
			return nil, nil
		}
		var err error
		if best, err = m.sup.spawnLocked(p); err != nil {
			return nil, err
		}
	}
	m.streams.place(s, best)
	m.sup.placedLocked(p, best)
	return best, nil
}

// CloseSession ends a session. Closing a stream's publish session ends the stream.
func (m *Manager) CloseSession(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.streams.close(id)
	if err != nil || s == nil {
		return err
	}
	m.streams.release(s)
	m.sup.releasedLocked(s.node)
	m.sup.signal()
	return nil
}

// StartNode starts a node of a purpose outside any stream (the node API).
func (m *Manager) StartNode(purpose string) (wire.NodeInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[purpose]
	if p == nil {
		return wire.NodeInfo{}, fmt.Errorf("%w: %q", ErrNoPurpose, purpose)
	}
	if p.failed != "" {
		return wire.NodeInfo{}, fmt.Errorf("%w (%s)", ErrPoolFailed, p.failed)
	}
	if c := m.sup.countLocked(p); c >= p.concurrent {
		return wire.NodeInfo{}, fmt.Errorf("%w: %d of %d %s nodes running", ErrQueueFull, c, p.concurrent, purpose)
	}
	n, err := m.sup.spawnLocked(p)
	if err != nil {
		return wire.NodeInfo{}, err
	}
	return m.sup.info(n), nil
}

// QueryNode is queryNode: what the agent knows of one node.
func (m *Manager) QueryNode(id string) (wire.NodeInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.sup.nodes[id]
	if n == nil {
		return wire.NodeInfo{}, ErrNoSuchNode
	}
	return m.sup.info(n), nil
}

// RecycleNode is recycleNode: the node takes no new streams, its live streams move
// to another node (gateways re-attach), and the process is stopped.
func (m *Manager) RecycleNode(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sup.recycleNowLocked(id)
}

// Watch subscribes to the manager's events (node-down); call stop to unsubscribe.
// A watcher that does not keep up loses events (they are hints: gateways also
// notice a dead node by its link's idle timeout). The channel closes when the
// manager shuts down.
func (m *Manager) Watch() (events <-chan wire.Event, stop func()) { return m.events.watch() }

// stream is one live stream as the API shows it.
func (m *Manager) stream(id string) (wire.StreamInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams.get(id)
	if s == nil {
		return wire.StreamInfo{}, ErrNotLive
	}
	return m.streams.info(s, m.cfg.ID), nil
}

// liveStream is the live stream id, if any; it is called under no lock of
// the caller (the services ask it).
func (m *Manager) liveStream(id string) (wire.StreamInfo, bool) {
	si, err := m.stream(id)
	return si, err == nil
}

// streamInfos are every live stream, by id.
func (m *Manager) streamInfos() []wire.StreamInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streams.infos(m.cfg.ID)
}

// nodeLogs is a node's output so far and, with follow, its new lines until the
// node's output or ctx ends.
func (m *Manager) nodeLogs(ctx context.Context, id string, follow bool) ([]string, <-chan string, error) {
	m.mu.Lock()
	n := m.sup.nodes[id]
	m.mu.Unlock()
	if n == nil {
		return nil, nil, ErrNoSuchNode
	}
	past, more := n.logs.Follow(ctx, follow)
	return past, more, nil
}

// drain stops taking new streams; live ones go on.
func (m *Manager) drain() {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
}

// liveStreams is the number of streams the agent carries.
func (m *Manager) liveStreams() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streams.len()
}

// shutdown ends the event streams, stops every node and waits for them and for
// every goroutine of the manager. The supervision loop's ctx must be done.
func (m *Manager) shutdown() {
	m.mu.Lock()
	m.events.close()
	nodes := m.sup.closeLocked()
	for _, p := range m.pools {
		p.queue = nil // waiters time out with their requests' contexts
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop(2 * time.Second) }()
	}
	wg.Wait()
	m.sup.wg.Wait()
	m.loop.Wait()
}

// load is what the agent's cluster tags and metrics report.
type load struct {
	purposes, failed []string // sorted
	capacity         int      // streams the pools could carry at their limits
	concurrent       int      // node processes the healthy pools may run (M2's concurrent)
	queued           int      // open requests waiting in the queues
	streams          int      // streams on nodes
	nodes            int
	respawns         int
	rss              int64 // of every node, bytes
}

func (m *Manager) load() load {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := load{nodes: len(m.sup.nodes), respawns: m.sup.respawns}
	for name, p := range m.pools {
		l.purposes = append(l.purposes, name)
		if p.failed != "" {
			l.failed = append(l.failed, name)
		}
		per := p.cfg.WaitQueue
		if per == 0 {
			per = 1000
		}
		l.capacity += per * p.concurrent
		if p.failed == "" {
			l.concurrent += p.concurrent
		}
		l.queued += len(p.queue)
	}
	for _, n := range m.sup.nodes {
		l.rss += n.rss
		l.streams += len(n.streams) // carried: a publish waiting in a queue is in queued
	}
	sort.Strings(l.purposes)
	sort.Strings(l.failed)
	return l
}

// fillStatus adds the manager's part of the process table to st: the state, the
// nodes, the pools and the summary's node counts.
func (m *Manager) fillStatus(st *wire.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.draining {
		st.State = wire.StateDraining
	}
	st.Summary.Respawns = m.sup.respawns
	for _, n := range m.sup.nodes {
		st.Nodes = append(st.Nodes, m.sup.info(n))
		st.Summary.MemActive += n.rss
		switch {
		case n.state != nodeRunning: // starting, recycling: neither
		case len(n.streams) > 0:
			st.Summary.Running++
		default:
			st.Summary.Sleeping++
		}
	}
	slices.SortFunc(st.Nodes, func(x, y wire.NodeInfo) int { return strings.Compare(x.ID, y.ID) })
	for name, p := range m.pools {
		ps := wire.PoolStatus{Purpose: name, Concurrent: p.concurrent, WaitQueue: p.cfg.WaitQueue, Queued: len(p.queue),
			MemoryLimit: p.memLimit, RestartsToday: p.budget.today, Failed: p.failed != "", Reason: p.failed}
		for _, n := range m.sup.nodes {
			if n.purpose == name {
				ps.Nodes++
				ps.Streams += len(n.streams)
			}
		}
		st.Pools = append(st.Pools, ps)
	}
	slices.SortFunc(st.Pools, func(x, y wire.PoolStatus) int { return strings.Compare(x.Purpose, y.Purpose) })
}
