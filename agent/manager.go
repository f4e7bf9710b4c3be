package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procstat"
	"github.com/sluicegw/sluice/internal/wire"
)

// Errors callers branch on (the API maps them to statuses).
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

// beatMisses is how many heartbeats a node may miss before it is a fault.
const beatMisses = 3

// Manager is the agent's node manager: the OWT NodeManager operations (getNode,
// recycleNode, queryNode) over per-purpose pools of node processes, with
// supervision (heartbeats, memory, crash budgets) and recycling (keepalive).
type Manager struct {
	cfg   Config
	ident *pki.Identity
	log   *slog.Logger
	total int64 // system memory, bytes

	mu       sync.Mutex
	pools    map[string]*pool
	nodes    map[string]*nodeProc
	streams  map[string]*streamEntry
	sessions map[string]*sessionEntry
	draining bool
	respawns int
	changed  chan struct{} // signalled when capacity may have freed
	closed   bool
	watchers map[chan wire.Event]struct{}

	wg sync.WaitGroup
}

type pool struct {
	purpose    string
	cfg        Pool
	memLimit   int64
	concurrent int
	queue      []*waiter
	restarts   []time.Time // recent fault restarts, for the intensity limit
	today      int         // fault restarts since local midnight
	day        int         // yday of today's count
	restarting int
	backoff    time.Duration
	failed     string // reason, "" when healthy
}

type waiter struct {
	ready chan *nodeProc
}

type streamEntry struct {
	id        string
	purpose   string
	node      *nodeProc
	epoch     uint64
	since     time.Time
	publisher string // gateway id
	pubSess   string
	viewers   int
}

type sessionEntry struct {
	id, stream, kind, gateway string
}

func newManager(cfg Config, ident *pki.Identity, log *slog.Logger) *Manager {
	total, free := memInfo()
	m := &Manager{
		cfg: cfg, ident: ident, log: log, total: total,
		pools: map[string]*pool{}, nodes: map[string]*nodeProc{},
		streams: map[string]*streamEntry{}, sessions: map[string]*sessionEntry{},
		changed: make(chan struct{}, 1), watchers: map[chan wire.Event]struct{}{},
	}
	auto := autoMemory(total, free, cfg.MemoryUsage)
	for name, pc := range cfg.Pools {
		lim, _ := parseMemory(pc.Memory, auto)
		conc := pc.Concurrent
		if conc == 0 {
			conc = autoConcurrent(total, cfg.MemoryUsage, lim)
		}
		m.pools[name] = &pool{purpose: name, cfg: pc, memLimit: lim, concurrent: conc}
	}
	return m
}

// start spawns each pool's warm nodes and runs supervision until ctx ends.
func (m *Manager) start(ctx context.Context) {
	m.mu.Lock()
	for _, p := range m.pools {
		for m.poolNodesLocked(p) < min(p.cfg.Warm, p.concurrent) {
			if _, err := m.spawnLocked(p); err != nil {
				m.log.Error("agent: warm node", "purpose", p.purpose, "err", err)
				break
			}
		}
	}
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.supervise(ctx)
	}()
}

func newID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// spawnLocked starts a node in p. m.mu is held.
func (m *Manager) spawnLocked(p *pool) (*nodeProc, error) {
	if m.closed {
		return nil, errors.New("agent: closing")
	}
	n, err := spawn(m.cfg.NodeCommand, newID(p.purpose+"-"), p.purpose, p.cfg.Procs, m.ident, m.cfg.MediaHost, p.memLimit, m.log, m.onNodeMsg, m.onNodeExit)
	if err != nil {
		return nil, err
	}
	n.lastBeat = time.Now()
	m.nodes[n.id] = n
	m.log.Info("agent: node started", "node", n.id, "pid", n.pid, "purpose", p.purpose)
	return n, nil
}

func (m *Manager) onNodeMsg(n *nodeProc, msg wire.ControlMsg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch msg.T {
	case wire.MsgReady:
		n.media = msg.Media
		n.lastBeat = time.Now()
		if n.state == nodeStarting {
			n.state = nodeRunning
		}
		select {
		case <-n.ready:
		default:
			close(n.ready)
		}
		m.signalLocked()
	case wire.MsgBeat:
		n.lastBeat = time.Now()
		n.rss, n.cpu, n.reported = msg.RSS, msg.CPU, msg.Streams
	}
}

// onNodeExit runs when a node process has exited, for whatever reason.
func (m *Manager) onNodeExit(n *nodeProc, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-n.ready:
	default:
		close(n.ready) // wake waiters; they see the node is not running
	}
	prev := n.state
	n.state = nodeStopped
	delete(m.nodes, n.id)
	m.publishLocked(wire.Event{T: wire.EventNodeDown, Node: n.id})
	p := m.pools[n.purpose]
	orphans := make([]*streamEntry, 0, len(n.streams))
	for id := range n.streams {
		if s := m.streams[id]; s != nil && s.node == n {
			orphans = append(orphans, s)
		}
	}
	crash := !n.planned && !m.closed
	m.log.Log(context.Background(), levelFor(crash), "agent: node exited", "node", n.id, "pid", n.pid, "state", prev,
		"streams", len(orphans), "fault", n.fault, "err", err)
	if m.closed || p == nil {
		return
	}
	if crash {
		m.respawns++
		if reason := p.recordRestart(time.Now()); reason != "" && p.failed == "" {
			p.failed = reason
			m.log.Error("agent: pool failed", "purpose", p.purpose, "reason", reason)
		}
	}
	// Streams of the dead node move to a replacement; gateways re-attach to it.
	if len(orphans) == 0 && m.poolNodesLocked(p) >= p.cfg.Warm {
		m.signalLocked()
		return
	}
	if p.failed != "" {
		for _, s := range orphans {
			s.node = nil
		}
		return
	}
	delay := time.Duration(0)
	if crash {
		delay = p.backoff
		p.backoff = min(max(2*p.backoff, 50*time.Millisecond), 5*time.Second)
	}
	p.restarting++
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		time.Sleep(delay)
		m.mu.Lock()
		defer m.mu.Unlock()
		p.restarting--
		nn, err := m.replaceLocked(p, orphans)
		if err != nil {
			m.log.Error("agent: respawn failed", "purpose", p.purpose, "err", err)
			return
		}
		m.log.Info("agent: node replaced", "old", n.id, "new", nn.id, "streams", len(orphans))
	}()
}

// replaceLocked spawns a node and moves streams onto it.
func (m *Manager) replaceLocked(p *pool, streams []*streamEntry) (*nodeProc, error) {
	nn, err := m.spawnLocked(p)
	if err != nil {
		for _, s := range streams {
			s.node = nil
		}
		return nil, err
	}
	for _, s := range streams {
		// A gateway may have re-attached first and got the stream a node already.
		if cur := m.streams[s.id]; cur == s && (s.node == nil || s.node.state == nodeStopped) {
			s.node = nn
			s.epoch++
			nn.streams[s.id] = struct{}{}
			nn.served++
		}
	}
	return nn, nil
}

func levelFor(crash bool) slog.Level {
	if crash {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// recordRestart counts a fault restart and says why the pool must fail, if it must.
func (p *pool) recordRestart(now time.Time) string {
	if now.YearDay() != p.day {
		p.day, p.today = now.YearDay(), 0
	}
	p.today++
	if p.today > p.cfg.Recovery {
		return fmt.Sprintf("%d restarts today, over the recovery budget of %d", p.today, p.cfg.Recovery)
	}
	p.restarts = append(p.restarts, now)
	cut := now.Add(-p.cfg.Intensity.Period)
	p.restarts = slices.DeleteFunc(p.restarts, func(t time.Time) bool { return t.Before(cut) })
	if len(p.restarts) > p.cfg.Intensity.MaxRestarts {
		return fmt.Sprintf("%d restarts within %s, over the intensity limit of %d", len(p.restarts), p.cfg.Intensity.Period, p.cfg.Intensity.MaxRestarts)
	}
	return ""
}

func (m *Manager) poolNodesLocked(p *pool) int {
	n := 0
	for _, nd := range m.nodes {
		if nd.purpose == p.purpose && nd.state != nodeRecycling {
			n++
		}
	}
	return n
}

func (m *Manager) signalLocked() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Open is getNode for a stream: a publish finds or makes the stream's node, a play
// finds the node that carries it. It waits for the node to be ready.
func (m *Manager) Open(ctx context.Context, req wire.OpenRequest) (wire.OpenResponse, error) {
	if req.Purpose == "" {
		req.Purpose = "relay"
	}
	m.mu.Lock()
	p := m.pools[req.Purpose]
	if p == nil {
		m.mu.Unlock()
		return wire.OpenResponse{}, fmt.Errorf("%w: %q", ErrNoPurpose, req.Purpose)
	}
	s := m.streams[req.Stream]
	switch req.Kind {
	case wire.KindPlay:
		if s == nil {
			m.mu.Unlock()
			return wire.OpenResponse{}, ErrNotLive
		}
	case wire.KindPublish:
		if s != nil && s.publisher != req.Gateway {
			m.mu.Unlock()
			return wire.OpenResponse{}, ErrBusy
		}
		if s == nil {
			if m.draining {
				m.mu.Unlock()
				return wire.OpenResponse{}, ErrDraining
			}
			s = &streamEntry{id: req.Stream, purpose: req.Purpose, since: time.Now(), publisher: req.Gateway, epoch: 1}
			m.streams[req.Stream] = s
		}
	default:
		m.mu.Unlock()
		return wire.OpenResponse{}, fmt.Errorf("unknown session kind %q", req.Kind)
	}
	m.mu.Unlock()

	wait := m.cfg.QueueTimeout
	if req.WaitMillis > 0 {
		wait = time.Duration(req.WaitMillis) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	n, err := m.nodeFor(ctx, p, s)
	if err != nil {
		if req.Kind == wire.KindPublish {
			m.mu.Lock()
			if s.node == nil && s.pubSess == "" && m.streams[s.id] == s {
				delete(m.streams, s.id)
			}
			m.mu.Unlock()
		}
		return wire.OpenResponse{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sess := &sessionEntry{id: newID("s-"), stream: s.id, kind: req.Kind, gateway: req.Gateway}
	m.sessions[sess.id] = sess
	if req.Kind == wire.KindPublish {
		if s.pubSess != "" {
			delete(m.sessions, s.pubSess) // a re-attach replaces the old session
		}
		s.pubSess = sess.id
	} else {
		s.viewers++
	}
	return wire.OpenResponse{Session: sess.id, Agent: m.cfg.ID, Node: n.id, Media: n.media, Epoch: s.epoch}, nil
}

// nodeFor returns the stream's ready node, assigning one (or queueing) if needed.
func (m *Manager) nodeFor(ctx context.Context, p *pool, s *streamEntry) (*nodeProc, error) {
	woken := false
	for {
		m.mu.Lock()
		if m.streams[s.id] != s {
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
			n, err = m.assignLocked(p, s, woken)
			if err != nil {
				m.mu.Unlock()
				return nil, err
			}
		}
		if n == nil { // queued
			w := &waiter{ready: make(chan *nodeProc, 1)}
			if len(p.queue) >= m.cfg.QueueLimit {
				m.mu.Unlock()
				return nil, ErrQueueFull
			}
			p.queue = append(p.queue, w)
			m.mu.Unlock()
			m.signal()
			select {
			case <-ctx.Done():
				m.mu.Lock()
				p.queue = slices.DeleteFunc(p.queue, func(x *waiter) bool { return x == w })
				m.mu.Unlock()
				select {
				case <-w.ready: // served just now; let the next one have it
					m.signal()
				default:
				}
				return nil, fmt.Errorf("%w (%s)", ErrQueueTime, m.cfg.QueueTimeout)
			case <-w.ready:
				woken = true
				continue // a slot freed for us: take it ahead of the rest of the queue
			}
		}
		m.mu.Unlock()
		select {
		case <-n.ready:
		case <-ctx.Done():
			return nil, ErrNodeTimeout
		}
		m.mu.Lock()
		st, media := n.state, n.media
		m.mu.Unlock()
		if (st == nodeRunning || st == nodeRecycling) && media != "" {
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

// assignLocked picks the node with room and the fewest streams, or spawns one when
// every node is full and the pool may grow. It returns nil, nil to mean "queue".
func (m *Manager) assignLocked(p *pool, s *streamEntry, woken bool) (*nodeProc, error) {
	if len(p.queue) > 0 && !woken && s.pubSess == "" { // live streams re-attaching go first
		// Others are waiting first: a new stream joins the queue behind them.
		return nil, nil
	}
	var best *nodeProc
	count := 0
	for _, n := range m.nodes {
		if n.purpose != p.purpose || n.state == nodeRecycling || n.state == nodeStopped {
			continue
		}
		count++
		if p.cfg.WaitQueue > 0 && len(n.streams) >= p.cfg.WaitQueue {
			continue
		}
		if best == nil || len(n.streams) < len(best.streams) {
			best = n
		}
	}
	if best == nil {
		if count >= p.concurrent {
			return nil, nil
		}
		var err error
		if best, err = m.spawnLocked(p); err != nil {
			return nil, err
		}
	}
	if s.node != nil && s.node != best {
		s.epoch++
	}
	s.node = best
	best.streams[s.id] = struct{}{}
	best.served++
	if k := p.cfg.Keepalive.MaxCount; k > 0 && best.served >= k {
		m.recycleLocked(best, "served maxcount streams")
	}
	return best, nil
}

func (m *Manager) signal() {
	m.mu.Lock()
	m.signalLocked()
	m.mu.Unlock()
}

// serveQueuesLocked wakes the first waiter of each pool that has room now.
func (m *Manager) serveQueuesLocked() {
	for _, p := range m.pools {
		if len(p.queue) == 0 {
			continue
		}
		if !m.hasRoomLocked(p) {
			continue
		}
		w := p.queue[0]
		p.queue = p.queue[1:]
		w.ready <- nil
	}
}

func (m *Manager) hasRoomLocked(p *pool) bool {
	count := 0
	for _, n := range m.nodes {
		if n.purpose != p.purpose || n.state == nodeRecycling || n.state == nodeStopped {
			continue
		}
		count++
		if p.cfg.WaitQueue == 0 || len(n.streams) < p.cfg.WaitQueue {
			return true
		}
	}
	return count < p.concurrent
}

// Close ends a session. Closing a stream's publish session ends the stream.
func (m *Manager) Close(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sess := m.sessions[id]
	if sess == nil {
		return ErrNoSuchSess
	}
	delete(m.sessions, id)
	s := m.streams[sess.stream]
	if s == nil {
		return nil
	}
	if sess.kind == wire.KindPlay {
		s.viewers = max(0, s.viewers-1)
		return nil
	}
	if s.pubSess != id {
		return nil
	}
	delete(m.streams, s.id)
	if s.node != nil {
		delete(s.node.streams, s.id)
		if s.node.state == nodeRecycling && len(s.node.streams) == 0 {
			m.retireLocked(s.node)
		}
	}
	m.signalLocked()
	return nil
}

// recycleLocked marks a node for recycling: it takes no new streams and no longer
// counts toward concurrent; it is stopped when its streams end, or at timewait.
func (m *Manager) recycleLocked(n *nodeProc, why string) {
	if n.state == nodeRecycling || n.state == nodeStopped {
		return
	}
	n.state = nodeRecycling
	if tw := m.pools[n.purpose].cfg.Keepalive.TimeWait; tw > 0 {
		n.recycleAt = time.Now().Add(tw)
	}
	_ = n.send(wire.ControlMsg{T: wire.MsgDrain})
	m.log.Info("agent: recycling node", "node", n.id, "why", why, "streams", len(n.streams))
	if len(n.streams) == 0 {
		m.retireLocked(n)
	}
	m.signalLocked() // a recycling node frees a concurrent slot
}

// retireLocked stops a node on purpose; its streams (if any) move to a new node.
func (m *Manager) retireLocked(n *nodeProc) {
	n.planned = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		n.stop(2 * time.Second)
	}()
}

// supervise runs the periodic checks: heartbeats, memory, age, timewait, queues,
// warm nodes.
func (m *Manager) supervise(ctx context.Context) {
	// 100 ms: a hung node is killed at most 3.1 s after its last heartbeat.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.changed:
		}
		m.mu.Lock()
		now := time.Now()
		for _, n := range m.nodes {
			p := m.pools[n.purpose]
			switch {
			case n.state == nodeStopped:
			case now.Sub(n.lastBeat) > beatMisses*wire.BeatInterval:
				if n.fault == "" {
					n.fault = fmt.Sprintf("missed %d heartbeats", beatMisses)
					m.log.Warn("agent: node hung; killing it", "node", n.id, "pid", n.pid, "last beat", now.Sub(n.lastBeat))
					n.kill()
				}
			case p.memLimit > 0 && n.rss > p.memLimit:
				if n.fault == "" {
					n.fault = fmt.Sprintf("RSS %d MiB over the limit of %d MiB", n.rss>>20, p.memLimit>>20)
					m.log.Warn("agent: node over its memory limit; replacing it", "node", n.id, "rss", n.rss, "limit", p.memLimit)
					n.planned = true // a memory recycle is not a crash
					n.kill()
				}
			case n.state == nodeRecycling && !n.recycleAt.IsZero() && now.After(n.recycleAt) && !n.planned:
				m.log.Info("agent: recycling node reached timewait; stopping it", "node", n.id, "streams", len(n.streams))
				m.retireLocked(n)
			case n.state == nodeRunning && p.cfg.Keepalive.MaxAge > 0 && now.Sub(n.started) > p.cfg.Keepalive.MaxAge:
				m.recycleLocked(n, "reached maxage")
			}
		}
		for _, p := range m.pools {
			if p.failed == "" && p.restarting == 0 && m.poolNodesLocked(p) < min(p.cfg.Warm, p.concurrent) && !m.draining {
				if _, err := m.spawnLocked(p); err != nil {
					m.log.Error("agent: warm node", "purpose", p.purpose, "err", err)
				}
			}
			if len(p.restarts) == 0 || now.Sub(p.restarts[len(p.restarts)-1]) > p.cfg.Intensity.Period {
				p.backoff = 0
			}
		}
		m.serveQueuesLocked()
		m.mu.Unlock()
	}
}

// Watch subscribes to the manager's events; call the returned function to stop.
// A watcher that does not keep up loses events (they are hints: gateways also
// notice a dead node by its link's idle timeout).
func (m *Manager) Watch() (<-chan wire.Event, func()) {
	ch := make(chan wire.Event, 64)
	m.mu.Lock()
	m.watchers[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.watchers, ch)
		m.mu.Unlock()
	}
}

func (m *Manager) publishLocked(ev wire.Event) {
	for ch := range m.watchers {
		select {
		case ch <- ev:
		default:
		}
	}
}

// shutdown stops every node and waits for them.
func (m *Manager) shutdown() {
	m.mu.Lock()
	m.closed = true
	for ch := range m.watchers {
		close(ch) // ends the event streams
	}
	m.watchers = map[chan wire.Event]struct{}{}
	nodes := make([]*nodeProc, 0, len(m.nodes))
	for _, n := range m.nodes {
		n.planned = true
		nodes = append(nodes, n)
	}
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
	m.wg.Wait()
}

// liveStreams is the number of streams the agent carries.
func (m *Manager) liveStreams() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.streams)
}

func (m *Manager) nodeInfoLocked(n *nodeProc) wire.NodeInfo {
	return wire.NodeInfo{ID: n.id, Agent: m.cfg.ID, Purpose: n.purpose, PID: n.pid, State: n.state,
		StartedAt: n.started, CPU: n.cpu, RSS: n.rss, Streams: len(n.streams), Served: n.served, Media: n.media}
}

// memInfo reads total and available memory from /proc/meminfo.
func memInfo() (total, avail int64) {
	return procstat.MemInfo()
}
