// Package agent is sluice's cluster worker. An agent joins the serf cluster,
// publishes its load as tags, serves the agent API that gateways call (mutual
// TLS), and runs the media work of the streams placed on it in node child
// processes, which its Manager places streams on and supervises in per-purpose
// pools.
//
// The design follows OWT's WorkerAgent and NodeManager and M2's process settings;
// RATIONALE.md says why it is built the way it is.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/agent/internal/services"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procstat"
	"github.com/sluicegw/sluice/internal/promexpo"
	"github.com/sluicegw/sluice/internal/wire"
)

// Agent is one cluster worker.
type Agent struct {
	cfg     Config
	cluster *cluster.Cluster
	ident   *pki.Identity
	log     *slog.Logger
	mgr     *Manager
	ln      net.Listener
	started time.Time
	meter   *procstat.Meter
	svc     *services.Proxy

	nextInspect time.Time // touched only by Run's loop
}

// New validates cfg, binds the agent API and makes the node manager. Nothing runs
// until Run.
func New(cfg Config, c *cluster.Cluster, ident *pki.Identity, log *slog.Logger, set *metrics.Set) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(cfg.NodeCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		cfg.NodeCommand = []string{exe, "node"}
	}
	ln, err := net.Listen("tcp", cfg.API)
	if err != nil {
		return nil, fmt.Errorf("agent: API listen: %w", err)
	}
	a := &Agent{cfg: cfg, cluster: c, ident: ident, log: log, ln: ln, started: time.Now(), meter: procstat.NewMeter(0)}
	a.mgr = newManager(cfg, ident, log)
	a.svc = services.New(cfg.Services, cfg.ID, log, a.mgr.liveStream)
	a.mgr.streams.agent, a.mgr.streams.changed = cfg.ID, a.svc.StreamChanged
	if set != nil {
		a.registerMetrics(set)
	}
	return a, nil
}

// APIAddr is the bound agent API address.
func (a *Agent) APIAddr() string { return a.ln.Addr().String() }

// Manager is the agent's node manager.
func (a *Agent) Manager() *Manager { return a.mgr }

// Run serves until ctx ends, then drains: it tags itself draining, takes no new
// streams, lets live ones finish within DrainTimeout, stops its nodes and returns.
// The caller leaves the cluster afterwards.
func (a *Agent) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           a.api(),
		TLSConfig:         a.ident.ServerTLS("h2", "http/1.1", wire.ALPNTunnel),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		// A gateway's proxy tunnel is spliced to a service, never parsed as
		// HTTP here. Protocols is set because a TLSNextProto map alone turns
		// HTTP/2 off.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){wire.ALPNTunnel: a.svc.ServeTunnel},
		Protocols:    new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(a.ln, "", "") }()
	mctx, stopMgr := context.WithCancel(context.Background())
	a.mgr.start(mctx)
	svcDone := make(chan struct{})
	go func() { defer close(svcDone); a.svc.Run(mctx) }()
	_ = a.cluster.SetTags(a.tags(wire.StateServing))
	a.log.Info("agent serving", "id", a.cfg.ID, "api", a.APIAddr())

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case <-tick.C:
			_ = a.cluster.SetTags(a.tags(wire.StateServing)) // pushed only on change, at most 1/s
			a.inspect()
		}
	}
	a.mgr.drain()
	_ = a.cluster.SetTags(a.tags(wire.StateDraining))
	deadline := time.Now().Add(a.cfg.DrainTimeout)
	for a.mgr.liveStreams() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	a.log.Info("agent: drained; stopping nodes", "streams left", a.mgr.liveStreams())
	stopMgr()
	a.mgr.shutdown()
	<-svcDone // the remove hooks of held streams are called
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// tags are the agent's serf tags: identity, load and the operator's own.
func (a *Agent) tags(state string) map[string]string {
	l := a.mgr.load()
	own, cpu := a.meter.Sample()
	return a.withOwnTags(map[string]string{
		wire.TagID:         a.cfg.ID,
		wire.TagAPI:        a.APIAddr(),
		wire.TagPurposes:   strings.Join(l.purposes, ","),
		wire.TagCapacity:   strconv.Itoa(l.capacity),
		wire.TagLoad:       strconv.Itoa(l.streams),
		wire.TagQueue:      strconv.Itoa(l.queued),
		wire.TagCPU:        strconv.Itoa(int(cpu/10) * 10), // coarse, so small jitter does not re-tag
		wire.TagMem:        strconv.FormatInt((own+l.rss)>>26<<6, 10),
		wire.TagState:      state,
		wire.TagFailed:     strings.Join(l.failed, ","),
		wire.TagConcurrent: strconv.Itoa(l.concurrent),
	})
}

// Status is the agent's process table.
func (a *Agent) Status() wire.Status {
	rss, cpu := procstat.NewMeter(0).Sample()
	st := wire.Status{Agent: a.cfg.ID, State: wire.StateServing, PID: os.Getpid(), Started: a.started, CPU: cpu, RSS: rss}
	_, avail := procstat.MemInfo()
	st.Summary.MemAvailable = avail
	st.Summary.MemActive = rss
	a.mgr.fillStatus(&st)
	return st
}

// NodeSeriesLimit bounds the per-node series an agent writes (the nodes with
// the lowest ids). A pool's concurrent limit already bounds its nodes; this
// holds the page if limits are set very high.
const NodeSeriesLimit = 256

func (a *Agent) registerMetrics(set *metrics.Set) {
	m := a.mgr
	set.NewGauge(`sluice_agent_nodes`, func() float64 { return float64(m.load().nodes) })
	set.NewGauge(`sluice_agent_streams`, func() float64 { return float64(m.liveStreams()) })
	set.NewGauge(`sluice_agent_queued`, func() float64 { return float64(m.load().queued) })
	set.RegisterMetricsWriter(a.writeMetrics)
}

// writeMetrics writes the agent's counters and its per-pool and per-node
// series from the process table at scrape time: a node's series end with it.
// Node series carry the agent's id, so a dashboard can sum a cluster's nodes
// per agent; the agent's own series have the scrape's instance label.
func (a *Agent) writeMetrics(w io.Writer) {
	var st wire.Status
	st.State = wire.StateServing
	a.mgr.fillStatus(&st)
	id := promexpo.LabelValue(a.cfg.ID)
	family := func(name, typ string) { metrics.WriteMetadataIfNeeded(w, name, typ) }
	family("sluice_agent_respawns_total", "counter")
	fmt.Fprintf(w, "sluice_agent_respawns_total %d\n", st.Summary.Respawns)
	family("sluice_agent_draining", "gauge")
	fmt.Fprintf(w, "sluice_agent_draining %d\n", boolInt(st.State == wire.StateDraining))
	family("sluice_agent_pool_failed", "gauge")
	for _, p := range st.Pools {
		fmt.Fprintf(w, "sluice_agent_pool_failed{purpose=%q} %d\n", promexpo.LabelValue(p.Purpose), boolInt(p.Failed))
	}
	nodes := st.Nodes[:min(len(st.Nodes), NodeSeriesLimit)] // sorted by id
	for _, f := range []struct {
		name string
		v    func(n wire.NodeInfo) float64
	}{
		{"sluice_node_cpu_ratio", func(n wire.NodeInfo) float64 { return n.CPU / 100 }},
		{"sluice_node_resident_memory_bytes", func(n wire.NodeInfo) float64 { return float64(n.RSS) }},
		{"sluice_node_streams", func(n wire.NodeInfo) float64 { return float64(n.Streams) }},
	} {
		family(f.name, "gauge")
		for _, n := range nodes {
			fmt.Fprintf(w, "%s{agent=%q,node=%q,purpose=%q} %g\n", f.name, id, promexpo.LabelValue(n.ID), promexpo.LabelValue(n.Purpose), f.v(n))
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
