// Package fanout is the gateway's one-to-many send path for WebRTC viewers:
// a stream's RTP packet is read and kept once, and for each viewer only what
// differs is done — the header rewritten (SSRC, payload type, sequence and
// timestamp offsets) and the packet sealed with the viewer's own SRTP keys
// (pion/srtp contexts keyed from each viewer's DTLS session) — and the
// datagrams leave in batches, one sendmmsg for up to 64 viewers, from the ICE
// socket each viewer's ICE pair selected. Large audiences are split across a
// few worker goroutines, one per core.
//
// pion keeps signalling, ICE, DTLS and the key exchange, and reads and writes
// RTCP: each viewer's NACKs are answered from one history per track, its
// keyframe requests go upstream, its REMB and TWCC feedback is read, and the
// group sends its sender reports. RATIONALE.md says why it is built so.
package fanout

import (
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Config configures a Group. Zero values mean the defaults given.
type Config struct {
	// Sockets are the ICE sockets viewers may be reached from. Required.
	Sockets []*Socket
	// Workers is how many goroutines beside the caller's seal and send a
	// packet for a large audience. Default GOMAXPROCS − 1; negative: none.
	Workers int
	// ShardViewers is the fewest viewers one goroutine seals a packet for
	// before the audience is split across the workers. Default 48: sealing
	// and sending costs ~2 µs a viewer and a worker's wake-up ~10–20 µs.
	ShardViewers int
	// ReportInterval is how often sender reports go to each viewer. Default 1 s.
	ReportInterval time.Duration
	// Log gets what goes wrong with a viewer. Default slog.Default().
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0) - 1
	}
	c.Workers = max(c.Workers, 0)
	if c.ShardViewers <= 0 {
		c.ShardViewers = 48
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Group is the viewers of one stream on the fan-out path. Write may be called
// from one goroutine per track at a time (different tracks concurrently).
type Group struct {
	cfg Config
	log *slog.Logger

	viewers atomic.Pointer[[]*Viewer] // copied on change; read once per packet
	mu      sync.Mutex                // serializes changes of viewers
	tracks  [MaxTracks]atomic.Pointer[track]

	jobs chan *shard
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	sent, failed atomic.Uint64
}

// track is a stream track's shared state: its history and the caller's
// scratch space (one writer per track at a time).
type track struct {
	clock   uint32
	hist    history
	plain   [maxPacket]byte
	batches map[*Socket]*batch
	own     shard
	shards  [maxShards]shard // the parts the workers take
}

// maxShards bounds how many parts one packet's audience is split into.
const maxShards = 16

// NewGroup starts a group's workers and its sender reports; Close stops them.
func NewGroup(cfg Config) *Group {
	cfg = cfg.withDefaults()
	g := &Group{cfg: cfg, log: cfg.Log, jobs: make(chan *shard), stop: make(chan struct{})}
	g.viewers.Store(new([]*Viewer))
	for range cfg.Workers {
		g.wg.Go(g.work)
	}
	g.wg.Go(g.report)
	return g
}

// AddTrack makes the group carry a track with the given RTP clock rate. A
// track is added once; a second call does nothing.
func (g *Group) AddTrack(index uint8, clockRate uint32) {
	if int(index) >= MaxTracks || g.tracks[index].Load() != nil {
		return
	}
	t := &track{clock: clockRate, batches: map[*Socket]*batch{}}
	t.own.g, t.own.batches = g, t.batches
	g.tracks[index].CompareAndSwap(nil, t)
}

// Write sends one RTP packet of a track to every viewer carrying it and
// returns how many it was sent to. The packet is marshalled and kept in the
// track's history once; pkt is not kept.
func (g *Group) Write(index uint8, pkt *rtp.Packet) int {
	if int(index) >= MaxTracks {
		return 0
	}
	t := g.tracks[index].Load()
	if t == nil {
		return 0
	}
	n, err := pkt.MarshalTo(t.plain[:])
	if err != nil {
		return 0
	}
	plain := t.plain[:n]
	t.hist.put(pkt.SequenceNumber, plain)
	vs := *g.viewers.Load()
	if len(vs) == 0 {
		return 0
	}
	now := time.Now().UnixNano()
	parts := 1
	if g.cfg.Workers > 0 && len(vs) >= 2*g.cfg.ShardViewers {
		parts = min(g.cfg.Workers+1, len(vs)/g.cfg.ShardViewers)
	}
	if parts == 1 {
		return g.count(t.own.run(vs, plain, index, now))
	}
	parts = min(parts, maxShards)
	var done sync.WaitGroup
	shards := &t.shards
	per := (len(vs) + parts - 1) / parts
	for i := 1; i < parts; i++ {
		lo, hi := min(i*per, len(vs)), min((i+1)*per, len(vs))
		shards[i] = shard{g: g, vs: vs[lo:hi], plain: plain, track: index, now: now, done: &done}
		done.Add(1)
		select {
		case g.jobs <- &shards[i]:
		case <-g.stop:
			done.Done()
			done.Wait() // the shards handed out read plain and t's buffers
			return 0
		}
	}
	sent := t.own.run(vs[:min(per, len(vs))], plain, index, now)
	done.Wait()
	for i := 1; i < parts; i++ {
		sent += shards[i].sent
	}
	return g.count(sent)
}

func (g *Group) count(n int) int {
	g.sent.Add(uint64(n))
	return n
}

// shard is a part of the audience one goroutine seals and sends a packet to.
type shard struct {
	g       *Group
	vs      []*Viewer
	plain   []byte
	track   uint8
	now     int64
	done    *sync.WaitGroup
	sent    int
	batches map[*Socket]*batch // the running goroutine's
}

// run seals the packet for each viewer of vs into the batch of its socket and
// sends the batches; it returns how many viewers it was sent to.
func (s *shard) run(vs []*Viewer, plain []byte, track uint8, now int64) int {
	sent, failed := 0, 0
	for _, v := range vs {
		d := v.dst.Load()
		if d == nil {
			continue
		}
		b := s.batches[d.sock]
		if b == nil {
			b = newBatch(d.sock)
			s.batches[d.sock] = b
		}
		n := v.seal(b.next(), plain, track, now)
		if n == 0 {
			continue
		}
		sent++
		failed += b.add(n, &d.peer)
	}
	for _, b := range s.batches {
		if b.pending() > 0 {
			failed += b.flush()
		}
	}
	if failed > 0 && s.g != nil {
		s.g.failed.Add(uint64(failed))
	}
	return sent - failed
}

// work runs shards of large audiences until the group closes.
func (g *Group) work() {
	own := map[*Socket]*batch{}
	for {
		select {
		case <-g.stop:
			return
		case s := <-g.jobs:
			s.batches = own
			s.sent = s.run(s.vs, s.plain, s.track, s.now)
			s.done.Done()
		}
	}
}

// report sends each viewer its sender reports every ReportInterval.
func (g *Group) report() {
	tick := time.NewTicker(g.cfg.ReportInterval)
	defer tick.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-tick.C:
			for _, v := range *g.viewers.Load() {
				v.sendReports(now)
			}
		}
	}
}

func (g *Group) add(v *Viewer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	vs := append(slices.Clone(*g.viewers.Load()), v)
	g.viewers.Store(&vs)
}

func (g *Group) remove(v *Viewer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	vs := slices.DeleteFunc(slices.Clone(*g.viewers.Load()), func(x *Viewer) bool { return x == v })
	g.viewers.Store(&vs)
}

// Viewers counts the viewers on the path.
func (g *Group) Viewers() int { return len(*g.viewers.Load()) }

// Sent counts the datagrams the group handed to the kernel.
func (g *Group) Sent() uint64 { return g.sent.Load() }

// Failed counts the datagrams the kernel refused (a route gone, a socket
// closed): their viewers missed those packets.
func (g *Group) Failed() uint64 { return g.failed.Load() }

func (g *Group) history(index uint8) *history {
	if int(index) >= MaxTracks {
		return nil
	}
	if t := g.tracks[index].Load(); t != nil {
		return &t.hist
	}
	return nil
}

func (g *Group) clockRate(index uint8) uint32 {
	if t := g.tracks[index].Load(); t != nil {
		return t.clock
	}
	return 90000
}

// socket is the configured socket bound at local, or nil. A candidate whose
// address was rewritten (gateway.iceHosts: pion's 1:1 NAT mapping advertises
// the public address in place of the bound one) matches no bound address: it
// takes a socket of its port and address family, a loopback one for a
// loopback remote and another one otherwise, where the remote's packets can
// have come from.
func (g *Group) socket(local, remote netip.AddrPort) *Socket {
	var fallback *Socket
	for _, s := range g.cfg.Sockets {
		a := s.local.Addr()
		if s.local == local || s.local.Port() == local.Port() && a.IsUnspecified() {
			return s
		}
		if fallback == nil && s.local.Port() == local.Port() && a.Is4() == local.Addr().Is4() &&
			a.IsLoopback() == remote.Addr().IsLoopback() {
			fallback = s
		}
	}
	return fallback
}

// Close stops the group's workers and reports. Its viewers' peer connections
// are their owners'. It is safe to call twice.
func (g *Group) Close() {
	g.once.Do(func() {
		close(g.stop)
		g.wg.Wait()
	})
}
