package agent

import (
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// streamTable is the agent's session table: the live streams, the sessions that
// gateways hold on them (OWT maps a session to its node), and the link from each
// stream to the node that carries it (streamEntry.node, and the node's own set of
// stream ids). It is guarded by the Manager's state lock and takes no lock itself.
type streamTable struct {
	streams  map[string]*streamEntry
	sessions map[string]*sessionEntry
	// changed, if set, hears of a stream that got its first node (live) and of
	// one that ended after that (not live): the services' add and remove hooks.
	// It is called under the state lock and must not block.
	changed func(info wire.StreamInfo, live bool)
	agent   string // the agent's id, for changed's infos
}

// streamEntry is one live stream on the agent.
type streamEntry struct {
	id        string
	purpose   string
	node      *nodeProc // nil while the stream has no node (its pool is failed, or a spawn failed)
	epoch     uint64    // goes up each time the stream moves to another node
	since     time.Time
	publisher string // the gateway that publishes it
	pubSess   string // the publish session; "" until the first publish is open
	viewers   int
	announced bool // changed heard it is live
}

// sessionEntry is one open request of a gateway: a publish or a play.
type sessionEntry struct {
	id, stream, kind, gateway string
}

func newStreamTable() streamTable {
	return streamTable{streams: map[string]*streamEntry{}, sessions: map[string]*sessionEntry{}}
}

// get is the live stream id, or nil.
func (t *streamTable) get(id string) *streamEntry { return t.streams[id] }

// has says whether s is still the live stream of its id (it may have ended, or
// ended and started again, while its caller waited).
func (t *streamTable) has(s *streamEntry) bool { return t.streams[s.id] == s }

// add records a new stream published by gateway.
func (t *streamTable) add(id, purpose, gateway string, now time.Time) *streamEntry {
	s := &streamEntry{id: id, purpose: purpose, since: now, publisher: gateway, epoch: 1}
	t.streams[id] = s
	return s
}

// abandon forgets a stream whose first publish never got a node.
func (t *streamTable) abandon(s *streamEntry) {
	if s.node == nil && s.pubSess == "" && t.has(s) {
		delete(t.streams, s.id)
		t.ended(s)
	}
}

// open records a session of kind on s. A publish session replaces the stream's
// earlier one (a gateway re-attaching); a play adds a viewer.
func (t *streamTable) open(s *streamEntry, kind, gateway string) *sessionEntry {
	sess := &sessionEntry{id: newID("s-"), stream: s.id, kind: kind, gateway: gateway}
	t.sessions[sess.id] = sess
	if kind == wire.KindPublish {
		if s.pubSess != "" {
			delete(t.sessions, s.pubSess)
		}
		s.pubSess = sess.id
	} else {
		s.viewers++
	}
	return sess
}

// close ends session id. When it is the stream's publish session the stream ends
// too: close removes it and returns it, still linked to its node, so that the
// caller can release the node.
func (t *streamTable) close(id string) (ended *streamEntry, err error) {
	sess := t.sessions[id]
	if sess == nil {
		return nil, ErrNoSuchSess
	}
	delete(t.sessions, id)
	s := t.streams[sess.stream]
	if s == nil {
		return nil, nil
	}
	if sess.kind == wire.KindPlay {
		s.viewers = max(0, s.viewers-1)
		return nil, nil
	}
	if s.pubSess != id {
		return nil, nil // an older publish session, replaced by a re-attach
	}
	delete(t.streams, s.id)
	t.ended(s)
	return s, nil
}

// ended tells changed that an announced stream is gone.
func (t *streamTable) ended(s *streamEntry) {
	if s.announced && t.changed != nil {
		t.changed(t.info(s, t.agent), false)
	}
}

// place puts s on n. A stream that moves from another node gets a new epoch.
func (t *streamTable) place(s *streamEntry, n *nodeProc) {
	if s.node != nil && s.node != n {
		s.epoch++
	}
	s.node = n
	n.streams[s.id] = struct{}{}
	n.served++
	if !s.announced && t.changed != nil {
		s.announced = true
		t.changed(t.info(s, t.agent), true)
	}
}

// release unlinks an ended stream from its node.
func (t *streamTable) release(s *streamEntry) {
	if s.node != nil {
		delete(s.node.streams, s.id)
	}
}

// orphansOf are the live streams that node n carried.
func (t *streamTable) orphansOf(n *nodeProc) []*streamEntry {
	out := make([]*streamEntry, 0, len(n.streams))
	for id := range n.streams {
		if s := t.streams[id]; s != nil && s.node == n {
			out = append(out, s)
		}
	}
	return out
}

// move puts the orphans of a dead node on its replacement nn, each with a new
// epoch; a stream that a gateway re-attached elsewhere in the meantime stays.
func (t *streamTable) move(orphans []*streamEntry, nn *nodeProc) {
	for _, s := range orphans {
		if t.has(s) && (s.node == nil || s.node.state == nodeStopped) {
			s.node = nn
			s.epoch++
			nn.streams[s.id] = struct{}{}
			nn.served++
		}
	}
}

// strand marks streams as having no node (no replacement could be made).
func (t *streamTable) strand(orphans []*streamEntry) {
	for _, s := range orphans {
		s.node = nil
	}
}

// len is the number of live streams.
func (t *streamTable) len() int { return len(t.streams) }

// info is s as the agent API shows it.
func (t *streamTable) info(s *streamEntry, agent string) wire.StreamInfo {
	si := wire.StreamInfo{Stream: s.id, Agent: agent, Epoch: s.epoch, Since: s.since, Viewers: s.viewers}
	if s.node != nil {
		si.Node, si.Media = s.node.id, s.node.media
	}
	return si
}

// infos are every live stream, by id.
func (t *streamTable) infos(agent string) []wire.StreamInfo {
	out := make([]wire.StreamInfo, 0, len(t.streams))
	for _, s := range t.streams {
		out = append(out, t.info(s, agent))
	}
	slices.SortFunc(out, func(x, y wire.StreamInfo) int { return strings.Compare(x.Stream, y.Stream) })
	return out
}
