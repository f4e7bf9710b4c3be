// Package cluster is sluice's membership: a thin layer over hashicorp/serf that
// joins gateways and agents into one gossip cluster, publishes each member's role
// and load as serf tags, and gives a consistent view of who is alive.
//
// There is no central registry: every member learns every other member's tags by
// gossip, which is what lets gateways place streams without Redis or etcd.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/sluicegw/sluice/internal/loopback"
)

// MaxTagBytes is serf's limit on a member's encoded tags.
const MaxTagBytes = 512

// ErrTagsTooLarge is returned by SetTags when the encoded tags would pass MaxTagBytes.
var ErrTagsTooLarge = errors.New("cluster: encoded tags exceed 512 bytes")

// Config configures a member. The zero value of each field means its default.
type Config struct {
	// Name is the member's unique name in the cluster. Required.
	Name string
	// Bind is the gossip address host:port. Default "127.0.0.1:7946".
	Bind string
	// Advertise is the address other members reach this one at. Default: Bind, or
	// the first private address of the host when Bind is a wildcard.
	Advertise string
	// Join lists members to contact at start (host:port). Empty starts a new cluster.
	Join []string
	// Key encrypts gossip (16, 24 or 32 bytes). Required unless Dev is true.
	Key []byte
	// KeyringFile keeps the member's gossip keys across restarts: serf
	// rewrites it when the cluster's keys change (RotateKey), and when it
	// exists at start its keys (the primary first) are used instead of Key.
	KeyringFile string
	// Dev allows plaintext gossip, for `sluice dev` on loopback only.
	Dev bool
	// Tags are the member's initial tags.
	Tags map[string]string
	// TagInterval is the least time between two tag updates. Default 1s.
	TagInterval time.Duration
}

// Member is one member as this process sees it.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`
	Status string            `json:"status"` // alive, leaving, left, failed
	Tags   map[string]string `json:"tags"`
}

// HasRole reports whether the member's role tag lists role.
func (m Member) HasRole(role string) bool {
	return slices.Contains(strings.Split(m.Tags["role"], ","), role)
}

// Cluster is this process's membership in the cluster.
type Cluster struct {
	cfg  Config
	serf *serf.Serf
	log  *slog.Logger

	mu      sync.Mutex
	want    map[string]string // tags as callers last set them
	pushed  map[string]string // tags serf carries now
	kick    chan struct{}
	subs    map[chan struct{}]struct{}
	changes atomic.Uint64 // serf events seen (Changes)
	done    chan struct{}
	closeMu sync.Once
	wg      sync.WaitGroup
}

// Start joins (or starts) the cluster.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Cluster, error) {
	if cfg.Name == "" {
		return nil, errors.New("cluster: a member name is required")
	}
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:7946"
	}
	if cfg.TagInterval <= 0 {
		cfg.TagInterval = time.Second
	}
	if len(cfg.Key) == 0 && !cfg.Dev {
		return nil, errors.New("cluster: gossip must be encrypted outside dev mode: give an encryption key (sluice ca init writes one)")
	}
	if n := len(cfg.Key); n != 0 && n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("cluster: encryption key is %d bytes; want 16, 24 or 32", n)
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind %q: %w", cfg.Bind, err)
	}
	if cfg.Dev && len(cfg.Key) == 0 && !loopback.Host(host) {
		return nil, fmt.Errorf("cluster: plaintext gossip is allowed on loopback only, not %s", host)
	}
	if err := checkTags(cfg.Tags); err != nil {
		return nil, err
	}

	c := &Cluster{
		cfg:    cfg,
		log:    logger,
		want:   maps.Clone(cfg.Tags),
		pushed: maps.Clone(cfg.Tags),
		kick:   make(chan struct{}, 1),
		subs:   map[chan struct{}]struct{}{},
		done:   make(chan struct{}),
	}
	if c.want == nil {
		c.want, c.pushed = map[string]string{}, map[string]string{}
	}

	ml := memberlist.DefaultLANConfig()
	ml.BindAddr, ml.BindPort = host, port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise %q: %w", cfg.Advertise, err)
		}
		ml.AdvertiseAddr, ml.AdvertisePort = ah, ap
	}
	ml.SecretKey = cfg.Key
	if cfg.KeyringFile != "" {
		kr, err := loadKeyring(cfg.KeyringFile)
		if err != nil {
			return nil, err
		}
		if kr != nil {
			ml.Keyring, ml.SecretKey = kr, nil
		}
	}
	logOut := &slogWriter{log: logger.With("component", "serf")}
	ml.LogOutput = logOut

	events := make(chan serf.Event, 64)
	sc := serf.DefaultConfig()
	sc.NodeName = cfg.Name
	sc.Tags = maps.Clone(c.want)
	sc.MemberlistConfig = ml
	sc.EventCh = events
	sc.LogOutput = logOut
	sc.ReconnectTimeout = 10 * time.Minute
	sc.TombstoneTimeout = 10 * time.Minute
	sc.EnableNameConflictResolution = true
	sc.KeyringFile = cfg.KeyringFile

	s, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start serf on %s: %w", cfg.Bind, err)
	}
	c.serf = s
	if len(cfg.Join) > 0 {
		if _, err := s.Join(cfg.Join, true); err != nil {
			_ = s.Shutdown()
			return nil, fmt.Errorf("cluster: join %v: %w", cfg.Join, err)
		}
	}
	c.wg.Add(2)
	go c.watch(events)
	go c.pushTags()
	return c, nil
}

// Name is this member's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Addr is the gossip address this member advertises.
func (c *Cluster) Addr() string {
	m := c.serf.LocalMember()
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}

// SetTags merges kv into the member's tags (an empty value removes a key). The
// change reaches the cluster at most once per TagInterval and only if the merged
// tags differ from what was last pushed.
func (c *Cluster) SetTags(kv map[string]string) error {
	c.mu.Lock()
	next := maps.Clone(c.want)
	for k, v := range kv {
		if v == "" {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	if err := checkTags(next); err != nil {
		c.mu.Unlock()
		return err
	}
	c.want = next
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// Tags returns the member's tags as last set.
func (c *Cluster) Tags() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.want)
}

func (c *Cluster) pushTags() {
	defer c.wg.Done()
	var last time.Time
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
		}
		if wait := c.cfg.TagInterval - time.Since(last); wait > 0 {
			select {
			case <-c.done:
				return
			case <-time.After(wait):
			}
		}
		c.mu.Lock()
		want := maps.Clone(c.want)
		same := maps.Equal(want, c.pushed)
		c.mu.Unlock()
		if same {
			continue
		}
		if err := c.serf.SetTags(want); err != nil {
			c.log.Warn("cluster: tag update failed", "err", err)
			continue
		}
		last = time.Now()
		c.mu.Lock()
		c.pushed = want
		c.mu.Unlock()
	}
}

// Members lists every member serf knows, alive or not, sorted by name.
func (c *Cluster) Members() []Member {
	ms := c.serf.Members()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{
			Name:   m.Name,
			Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
			Status: m.Status.String(),
			Tags:   maps.Clone(m.Tags),
		})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changes counts membership and tag changes (serf's events) so far: a view of
// Members built when it was n is current while it is still n.
func (c *Cluster) Changes() uint64 { return c.changes.Load() }

// Subscribe returns a channel that receives a value (coalesced) whenever
// membership or a member's tags change, and a function that ends the subscription.
func (c *Cluster) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

func (c *Cluster) watch(events <-chan serf.Event) {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case ev := <-events:
			c.changes.Add(1)
			if me, ok := ev.(serf.MemberEvent); ok {
				for _, m := range me.Members {
					c.log.Debug("cluster: member event", "event", me.Type.String(), "member", m.Name)
				}
			}
			c.mu.Lock()
			for ch := range c.subs {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			c.mu.Unlock()
		}
	}
}

// Leave tells the cluster this member is going away, so others see it as left
// rather than failed. It blocks until the leave is gossiped or ctx ends.
func (c *Cluster) Leave(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- c.serf.Leave() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close shuts the member down. It is safe to call more than once.
func (c *Cluster) Close() error {
	var err error
	c.closeMu.Do(func() {
		close(c.done)
		err = c.serf.Shutdown()
		c.wg.Wait()
	})
	return err
}

func checkTags(tags map[string]string) error {
	// serf encodes tags with msgpack: a map header plus, per entry, a string header
	// of up to 3 bytes and the bytes. Counting the worst case keeps us under the limit.
	n := 3
	for k, v := range tags {
		n += len(k) + len(v) + 6
	}
	if n > MaxTagBytes {
		return fmt.Errorf("%w (about %d)", ErrTagsTooLarge, n)
	}
	return nil
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, port, nil
}

// slogWriter turns serf's and memberlist's log lines into slog records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	// serf and memberlist prefix their own date and time; slog has its own.
	if len(line) > 20 && line[4] == '/' && line[7] == '/' && line[13] == ':' {
		line = line[20:]
	}
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "[ERR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.Contains(line, "[INFO]"):
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}
