package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
)

// beatMisses is how many heartbeats a node may miss before it is a fault.
const beatMisses = 3

// supervisor runs the node processes of every pool: it spawns them, hears their
// heartbeats, kills the hung and the oversized, replaces the dead (within the
// pool's restart budget, moving their streams to the replacement), and recycles
// nodes by M2's keepalive (maxcount, maxage, timewait).
//
// Everything it guards is guarded by the Manager's state lock, which it shares
// (mu): the node table, the nodes' mutable fields, and through the pools and the
// stream table it changes, theirs. Its own goroutines (a node's messages and exit,
// a replacement's backoff, a node's stop) take mu; the supervision tick is run by
// the Manager with mu held.
type supervisor struct {
	mu *sync.Mutex // the Manager's state lock

	agent     string
	command   []string
	ident     *pki.Identity
	mediaHost string
	log       *slog.Logger

	pools   map[string]*pool // the Manager's; fixed keys
	streams *streamTable     // the Manager's
	events  *eventHub
	changed chan struct{} // a hint to run the supervision tick now: capacity may have freed
	wg      sync.WaitGroup

	// guarded by mu
	nodes    map[string]*nodeProc
	respawns int  // fault restarts since start
	closed   bool // shutting down: nothing is spawned or replaced
}

func newID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// signal asks for a supervision tick soon. It needs no lock.
func (s *supervisor) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// spawnLocked starts a node in p.
func (s *supervisor) spawnLocked(p *pool) (*nodeProc, error) {
	if s.closed {
		return nil, errors.New("agent: closing")
	}
	n, err := spawn(s.command, newID(p.purpose+"-"), p.purpose, p.cfg.Procs, s.ident, s.mediaHost, p.memLimit, s.log, s.onMsg, s.onExit)
	if err != nil {
		return nil, err
	}
	n.lastBeat = time.Now()
	s.nodes[n.id] = n
	s.log.Info("agent: node started", "node", n.id, "pid", n.pid, "purpose", p.purpose)
	return n, nil
}

// warmUpLocked starts every pool's warm nodes, at start.
func (s *supervisor) warmUpLocked() {
	for _, p := range s.pools {
		for s.countLocked(p) < p.warmTarget() {
			if _, err := s.spawnLocked(p); err != nil {
				s.log.Error("agent: warm node", "purpose", p.purpose, "err", err)
				break
			}
		}
	}
}

// onMsg handles a message from node n's control channel.
func (s *supervisor) onMsg(n *nodeProc, msg wire.ControlMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch msg.T {
	case wire.MsgReady:
		n.media = msg.Media
		n.lastBeat = time.Now()
		if n.state == nodeStarting {
			n.state = nodeRunning
		}
		closeReady(n)
		s.respawnedLocked(n)
		s.signal()
	case wire.MsgBeat:
		n.lastBeat = time.Now()
		n.rss, n.cpu, n.reported = msg.RSS, msg.CPU, msg.Streams
	}
}

// closeReady wakes whoever waits for n to be ready (it is, or it died first).
func closeReady(n *nodeProc) {
	select {
	case <-n.ready:
	default:
		close(n.ready)
	}
}

// onExit runs when a node process has exited, for whatever reason: it tells the
// gateways (node-down), counts a crash against the pool's budget and replaces
// the node when it carried streams or the pool is below its warm nodes.
func (s *supervisor) onExit(n *nodeProc, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeReady(n) // waiters see the node is not running
	prev := n.state
	n.state = nodeStopped
	delete(s.nodes, n.id)
	s.respawnedLocked(n) // a replacement that died before it was ready frees its turn too
	s.events.publish(wire.Event{T: wire.EventNodeDown, Node: n.id})
	p := s.pools[n.purpose]
	orphans := s.streams.orphansOf(n)
	crash := !n.planned && !s.closed
	s.log.Log(context.Background(), levelFor(crash), "agent: node exited", "node", n.id, "pid", n.pid, "state", prev,
		"streams", len(orphans), "fault", n.fault, "err", err)
	if s.closed || p == nil {
		return
	}
	if crash {
		s.respawns++
		if reason := p.recordFault(time.Now()); reason != "" {
			s.log.Error("agent: pool failed", "purpose", p.purpose, "reason", reason)
		}
	}
	if len(orphans) == 0 && s.countLocked(p) >= p.cfg.Warm {
		s.signal()
		return
	}
	if p.failed != "" {
		s.streams.strand(orphans)
		return
	}
	delay := time.Duration(0)
	if crash {
		delay = p.budget.nextDelay()
	}
	s.replaceAfterLocked(delay, p, n, orphans)
}

// replaceAfterLocked spawns a replacement for the dead node old after delay and
// moves its streams onto it; gateways re-attach to it. No more than the pool's
// respawnable replacements start at once (M2: many processes restarting together
// slow each other down and take memory at the same moment); the others wait for
// one of those to be ready, in the order their nodes died.
func (s *supervisor) replaceAfterLocked(delay time.Duration, p *pool, old *nodeProc, orphans []*streamEntry) {
	p.restarting++
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		time.Sleep(delay)
		s.mu.Lock()
		defer s.mu.Unlock()
		p.turns = append(p.turns, respawnTurn{old, orphans})
		s.nextRespawnLocked(p)
	}()
}

// nextRespawnLocked starts the replacements waiting for their turn while the
// pool has fewer than respawnable starting.
func (s *supervisor) nextRespawnLocked(p *pool) {
	for len(p.turns) > 0 && p.respawning < p.cfg.Respawnable {
		turn := p.turns[0]
		p.turns = p.turns[1:]
		p.restarting--
		if s.closed {
			continue
		}
		nn, err := s.spawnLocked(p)
		if err != nil {
			s.streams.strand(turn.orphans)
			s.log.Error("agent: respawn failed", "purpose", p.purpose, "err", err)
			continue
		}
		nn.respawn = true
		p.respawning++
		s.streams.move(turn.orphans, nn)
		s.log.Info("agent: node replaced", "old", turn.old.id, "new", nn.id, "streams", len(turn.orphans))
	}
}

// respawnedLocked is told that n is ready or gone: if it was a replacement, its
// turn is over and the next replacement may start.
func (s *supervisor) respawnedLocked(n *nodeProc) {
	if !n.respawn {
		return
	}
	n.respawn = false
	if p := s.pools[n.purpose]; p != nil {
		p.respawning--
		s.nextRespawnLocked(p)
	}
}

func levelFor(crash bool) slog.Level {
	if crash {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// countLocked is the nodes of p that count toward its concurrent limit: every
// one but the recycling (M2: a recycling process is not counted).
func (s *supervisor) countLocked(p *pool) int {
	c := 0
	for _, n := range s.nodes {
		if n.purpose == p.purpose && n.state != nodeRecycling {
			c++
		}
	}
	return c
}

// pickLocked is the node of p that may take a stream and has the fewest, or nil;
// and how many of p's nodes take streams at all (starting or running).
func (s *supervisor) pickLocked(p *pool) (best *nodeProc, open int) {
	for _, n := range s.nodes {
		if n.purpose != p.purpose || n.state == nodeRecycling || n.state == nodeStopped {
			continue
		}
		open++
		if !p.roomOn(len(n.streams)) {
			continue
		}
		if best == nil || len(n.streams) < len(best.streams) {
			best = n
		}
	}
	return best, open
}

// hasRoomLocked says whether p could place a stream now: on a node with room, or
// on a node it may still spawn.
func (s *supervisor) hasRoomLocked(p *pool) bool {
	open := 0
	for _, n := range s.nodes {
		if n.purpose != p.purpose || n.state == nodeRecycling || n.state == nodeStopped {
			continue
		}
		open++
		if p.roomOn(len(n.streams)) {
			return true
		}
	}
	return open < p.concurrent
}

// placedLocked is told that n took one more stream: a node that has served
// keepalive.maxcount streams is recycled.
func (s *supervisor) placedLocked(p *pool, n *nodeProc) {
	if k := p.cfg.Keepalive.MaxCount; k > 0 && n.served >= k {
		s.recycleLocked(n, "served maxcount streams")
	}
}

// releasedLocked is told that a stream on n ended: a recycling node with no
// stream left stops.
func (s *supervisor) releasedLocked(n *nodeProc) {
	if n != nil && n.state == nodeRecycling && len(n.streams) == 0 {
		s.retireLocked(n)
	}
}

// recycleLocked marks a node for recycling: it takes no new streams and no longer
// counts toward concurrent; it is stopped when its streams end, or at timewait.
func (s *supervisor) recycleLocked(n *nodeProc, why string) {
	if n.state == nodeRecycling || n.state == nodeStopped {
		return
	}
	n.state = nodeRecycling
	if tw := s.pools[n.purpose].cfg.Keepalive.TimeWait; tw > 0 {
		n.recycleAt = time.Now().Add(tw)
	}
	_ = n.send(wire.ControlMsg{T: wire.MsgDrain})
	s.log.Info("agent: recycling node", "node", n.id, "why", why, "streams", len(n.streams))
	if len(n.streams) == 0 {
		s.retireLocked(n)
	}
	s.signal() // a recycling node frees a concurrent slot
}

// recycleNowLocked is OWT's recycleNode: node id takes no new streams and stops
// now; its live streams move to a replacement (gateways re-attach).
func (s *supervisor) recycleNowLocked(id string) error {
	n := s.nodes[id]
	if n == nil {
		return ErrNoSuchNode
	}
	n.state = nodeRecycling
	s.retireLocked(n)
	return nil
}

// retireLocked stops a node on purpose; its streams (if any) move to a new node.
func (s *supervisor) retireLocked(n *nodeProc) {
	n.planned = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		n.stop(2 * time.Second)
	}()
}

// checkLocked is the health and keepalive check of every node: a node that
// missed beatMisses heartbeats is hung and killed (a crash), one over its memory
// limit is killed and replaced (not a crash), a recycling node past timewait is
// stopped, a running node past maxage is recycled.
func (s *supervisor) checkLocked(now time.Time) {
	for _, n := range s.nodes {
		p := s.pools[n.purpose]
		switch {
		case n.state == nodeStopped:
		case now.Sub(n.lastBeat) > beatMisses*wire.BeatInterval:
			if n.fault == "" {
				n.fault = fmt.Sprintf("missed %d heartbeats", beatMisses)
				s.log.Warn("agent: node hung; killing it", "node", n.id, "pid", n.pid, "last beat", now.Sub(n.lastBeat))
				n.kill()
			}
		case p.memLimit > 0 && n.rss > p.memLimit:
			if n.fault == "" {
				n.fault = fmt.Sprintf("RSS %d MiB over the limit of %d MiB", n.rss>>20, p.memLimit>>20)
				s.log.Warn("agent: node over its memory limit; replacing it", "node", n.id, "rss", n.rss, "limit", p.memLimit)
				n.planned = true // a memory recycle is not a crash
				n.kill()
			}
		case n.state == nodeRecycling && !n.recycleAt.IsZero() && now.After(n.recycleAt) && !n.planned:
			s.log.Info("agent: recycling node reached timewait; stopping it", "node", n.id, "streams", len(n.streams))
			s.retireLocked(n)
		case n.state == nodeRunning && p.cfg.Keepalive.MaxAge > 0 && now.Sub(n.started) > p.cfg.Keepalive.MaxAge:
			s.recycleLocked(n, "reached maxage")
		}
	}
}

// keepWarmLocked starts one node in each healthy pool that is below its warm
// nodes and not waiting for a replacement, unless warm is false (draining); and
// lets each pool's restart backoff settle.
func (s *supervisor) keepWarmLocked(now time.Time, warm bool) {
	for _, p := range s.pools {
		if p.failed == "" && p.restarting == 0 && s.countLocked(p) < p.warmTarget() && warm {
			if _, err := s.spawnLocked(p); err != nil {
				s.log.Error("agent: warm node", "purpose", p.purpose, "err", err)
			}
		}
		p.budget.settle(now)
	}
}

// closeLocked stops all spawning and replacing and returns the nodes to stop,
// each marked as stopped on purpose.
func (s *supervisor) closeLocked() []*nodeProc {
	s.closed = true
	nodes := make([]*nodeProc, 0, len(s.nodes))
	for _, n := range s.nodes {
		n.planned = true
		nodes = append(nodes, n)
	}
	return nodes
}

// info is n as the agent API shows it.
func (s *supervisor) info(n *nodeProc) wire.NodeInfo {
	return wire.NodeInfo{ID: n.id, Agent: s.agent, Purpose: n.purpose, PID: n.pid, State: n.state,
		StartedAt: n.started, CPU: n.cpu, RSS: n.rss, Streams: len(n.streams), Served: n.served, Media: n.media}
}
