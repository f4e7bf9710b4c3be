package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/agent"
	"github.com/sluicegw/sluice/agent/node"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procs"
	"github.com/sluicegw/sluice/internal/promexpo"
	"github.com/sluicegw/sluice/internal/wire"
)

// runAgent runs an agent that joins a cluster.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file")
	name := fs.String("name", "", "member name and agent id (default: agent.id, else the TLS name)")
	join := fs.String("join", "", "comma list of members to join (host:port)")
	bind := fs.String("bind", "", "gossip address (overrides cluster.bind)")
	api := fs.String("api", "", "agent API address (overrides agent.api)")
	tlsDir := fs.String("tls-dir", "", "directory with ca.crt, gossip.key and NAME.crt/NAME.key (overrides tls.dir)")
	tlsName := fs.String("tls-name", "", "certificate name in the TLS directory (overrides tls.name)")
	metricsAddr := fs.String("metrics", "", "address of the agent's /metrics (overrides agent.metrics; default "+defaultAgentMetrics+", off for none)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr)
	go procs.Run(ctx, log) // one P while the process is quiet (internal/procs)
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice agent:", err)
		return 2
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "sluice agent:", err); return 1 }
	m := cfg.member(*name, *join, *bind, *tlsDir, *tlsName)
	if cfg.Agent.ID != "" && *name == "" {
		m.name = cfg.Agent.ID
	}
	set := metrics.NewSet()
	c, id, err := m.joinCluster(ctx, map[string]string{wire.TagRole: wire.RoleAgent, wire.TagID: m.name}, log)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	ag, err := newAgent(ctx, cfg, c, id, *api, m.name, false, log, set)
	if err != nil {
		return fail(err)
	}
	stopMetrics, metricsAt, err := serveAgentMetrics(cmp.Or(*metricsAddr, cfg.Agent.Metrics), set, log)
	if err != nil {
		return fail(err)
	}
	defer stopMetrics()
	stopHUP := agentReload(ctx, *cfgPath, cfg, ag, log) // before "ready": a reload may follow at once
	defer stopHUP()
	fmt.Fprintf(stdout, "sluice agent %s is ready: API %s, cluster %s%s\n", m.name, ag.APIAddr(), c.Addr(), metricsAt)
	err = ag.Run(ctx)
	lctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_ = c.Leave(lctx)
	cancel()
	if err != nil {
		return fail(err)
	}
	return 0
}

// runNode is a node process; agents start it.
func runNode(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	purpose := fs.String("purpose", "relay", "what the node does: "+fmt.Sprint(node.Purposes))
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := node.Run(ctx, *purpose, newLogger(stderr)); err != nil {
		fmt.Fprintln(stderr, "sluice node:", err)
		return 1
	}
	return 0
}

// runCA makes the cluster CA and member certificates.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "gossip-key" && args[1] == "rotate" {
		return runRotateGossipKey(ctx, args[2:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "init" && args[0] != "issue") {
		fmt.Fprintln(stderr, "usage: sluice ca init --dir DIR | sluice ca issue --dir DIR --name NAME [--host H]... | sluice ca gossip-key rotate [--addr GATEWAY] [--token T]")
		return 2
	}
	fs := flag.NewFlagSet("sluice ca "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "CA directory (default tls.dir)")
	name := fs.String("name", "", "member name (issue; default tls.name)")
	cfgPath := fs.String("config", "", "YAML config file: tls.dir and tls.name")
	var hosts stringList
	fs.Var(&hosts, "host", "DNS name or IP address to add to the certificate (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice ca:", err)
		return 2
	}
	*dir, *name = cmp.Or(*dir, cfg.TLS.Dir), cmp.Or(*name, cfg.TLS.Name)
	if *dir == "" {
		fmt.Fprintln(stderr, "sluice ca: --dir (or tls.dir) is required")
		return 2
	}
	switch args[0] {
	case "init":
		if err := pki.InitDir(*dir); err != nil {
			fmt.Fprintln(stderr, "sluice ca:", err)
			return 1
		}
		fmt.Fprintf(stdout, "made a cluster CA and a gossip key in %s (keep ca.key offline in production)\n", *dir)
	case "issue":
		if *name == "" {
			fmt.Fprintln(stderr, "sluice ca issue: --name (or tls.name) is required")
			return 2
		}
		ca, err := pki.LoadCA(*dir)
		if err == nil {
			var id *pki.Identity
			if id, err = ca.Issue(*name, hosts); err == nil {
				err = pki.WriteIdentity(*dir, id)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "sluice ca:", err)
			return 1
		}
		fmt.Fprintf(stdout, "issued %s.crt and %s.key in %s\n", *name, *name, *dir)
	}
	return 0
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// defaultAgentMetrics is a standalone agent's /metrics address unless
// agent.metrics or --metrics says otherwise: loopback, for a local scraper.
const defaultAgentMetrics = "127.0.0.1:9464"

// serveAgentMetrics serves set (the agent's series) and the process's on
// addr's /metrics until stop. An explicit address that cannot be bound is an
// error; the default one, taken by another agent on the machine, only a
// warning. It returns what the ready line adds ("", or ", metrics http://…").
func serveAgentMetrics(addr string, set *metrics.Set, log logger) (stop func(), ready string, err error) {
	if addr == "off" {
		return func() {}, "", nil
	}
	explicit := addr != ""
	if !explicit {
		addr = defaultAgentMetrics
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if !explicit && errors.Is(err, syscall.EADDRINUSE) {
			log.Warn("agent: the default metrics address is taken; serving no /metrics (set agent.metrics)", "addr", addr)
			return func() {}, "", nil
		}
		return nil, "", fmt.Errorf("agent.metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", promexpo.ContentType)
		promexpo.Write(w, set)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }() // until stop
	return func() { shutdown(srv); <-done }, ", metrics http://" + ln.Addr().String() + "/metrics", nil
}

// agentReload answers SIGHUP on an agent instead of the default action (the
// process ends, its nodes with it): it re-reads the file, replaces the pool
// limits (process.*) when only those changed live, and logs the changed
// settings that take effect at the next start, or why the file is refused.
// stop ends it.
func agentReload(ctx context.Context, path string, cur *fileConfig, ag *agent.Agent, log logger) (stop func()) {
	start := cur
	return onSIGHUP(ctx, func(context.Context) {
		next, err := loadConfig(path)
		if err == nil {
			err = reloadAgentPools(start, cur, next, ag, log)
		}
		if err != nil {
			log.Error("config reload refused; the running config stays", "err", err)
			return
		}
		cur = next
	})
}

// reloadAgentPools applies next's pool limits to ag when they changed from
// cur, and logs what changed: the pools' limits live, the rest (against the
// file the agent started with) at the next start.
func reloadAgentPools(start, cur, next *fileConfig, ag *agent.Agent, log logger) error {
	applied, restart, err := splitChanges(start, cur, next, func(p string) bool { return under(p, "process") })
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		if err := ag.SetPools(next.agentConfig("reload", "", false).Pools); err != nil {
			return err
		}
	}
	logReload(log, applied, restart)
	return nil
}
