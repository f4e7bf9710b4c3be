package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/loopback"
	"github.com/sluicegw/sluice/internal/procs"
	"github.com/sluicegw/sluice/internal/wire"
)

// runGateway runs a gateway that joins a cluster of agents.
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file")
	name := fs.String("name", "", "member name (default: gateway id from config, else the TLS name)")
	join := fs.String("join", "", "comma list of members to join (host:port)")
	bind := fs.String("bind", "", "gossip address (overrides cluster.bind)")
	httpAddr := fs.String("http", "", "HTTP address (overrides gateway.listen)")
	icePort := fs.Int("ice-port", 0, "ICE UDP port (overrides gateway.iceUDPPort)")
	iceBind := fs.String("ice-bind", "", "address the ICE port binds (overrides gateway.iceBind)")
	tlsDir := fs.String("tls-dir", "", "directory with ca.crt, gossip.key and NAME.crt/NAME.key (overrides tls.dir)")
	tlsName := fs.String("tls-name", "", "certificate name in the TLS directory (overrides tls.name)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr)
	go procs.Run(ctx, log) // one P while the process is quiet (internal/procs)
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice gateway:", err)
		return 2
	}
	if err := cfg.checkSigned(); err != nil {
		fmt.Fprintln(stderr, "sluice gateway: config:", err)
		return 2
	}
	m := cfg.member(*name, *join, *bind, *tlsDir, *tlsName)
	gcfg := cfg.gatewayConfig()
	if *httpAddr != "" {
		gcfg.Listen = *httpAddr
	}
	if *iceBind != "" {
		gcfg.ICEBind = *iceBind
	}
	if *icePort != 0 {
		gcfg.ICEUDPPort = *icePort
	}
	fail := func(err error) int { fmt.Fprintln(stderr, "sluice gateway:", err); return 1 }

	set := metrics.NewSet()
	c, id, err := m.joinCluster(ctx, map[string]string{wire.TagRole: wire.RoleGateway, wire.TagID: m.name, wire.TagHTTP: gcfg.Listen}, log)
	if err != nil {
		return fail(err)
	}
	defer c.Close()

	pol, closePol, err := newLivePolicy(ctx, cfg, log, set)
	if err != nil {
		return fail(err)
	}
	defer closePol()
	gcfg.ID = m.name
	if err := gcfg.withMoQ(); err != nil {
		return fail(err)
	}
	opts, err := pol.options(cfg, log)
	if err != nil {
		return fail(err)
	}
	rl := &reloader{path: *cfgPath, log: log.With("component", "config"), pol: pol, cur: cfg}
	if *cfgPath != "" {
		opts = append(opts, gateway.WithReloader(rl.reload))
	}
	gw, err := gateway.New(gcfg.Config, c, id, log.With("component", "gateway"), set, opts...)
	if err != nil {
		return fail(err)
	}
	defer gw.Close()
	rl.gw = gw
	defer rl.onSignal(ctx)()
	if !loopback.Addr(gcfg.Listen) && gcfg.Config.APIToken == "" {
		return fail(fmt.Errorf("gateway.listen %s is not loopback: set gateway.apiToken so the /v1 API is not open to anyone", gcfg.Listen))
	}
	serveCtx, finishDrain := drainOnSignal(ctx, gw, c, gcfg.DrainTimeout)
	defer finishDrain()
	ready := func(scheme string) func(net.Addr) {
		return func(a net.Addr) {
			fmt.Fprintf(stdout, "sluice gateway %s is ready on %s://%s/ (ICE %s), cluster %s via %s\n", m.name, scheme, a, gw.ICEAddr(), c.Addr(), strings.Join(m.join, ","))
			if ma := gw.MoQAddr(); ma != nil {
				fmt.Fprintf(stdout, "  MoQ        moqt://%s (QUIC)  https://%s/ (WebTransport)\n", ma, ma)
			}
			if len(gcfg.ACME.Domains) > 0 {
				fmt.Fprintf(stdout, "  ACME       %s\n", gcfg.ACME.summary())
			}
		}
	}
	if len(gcfg.ACME.Domains) > 0 {
		err = serveACME(serveCtx, gcfg.Listen, gcfg.ACME, gw.Handler(), log, ready("https"))
	} else {
		err = serveHTTP(serveCtx, gcfg.Listen, gw.Handler(), nil, "", log, ready("http"))
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// drainOnSignal drains gw once ctx ends (SIGTERM or SIGINT; gateway.Drain
// says how), then stops the HTTP server while the member leaves the cluster,
// each bounded by exitLimit: the process exits about a second after timeout at
// most. It returns the context the HTTP server serves until, and finish, which
// gives the drain up if it has not begun and waits for it to end.
func drainOnSignal(ctx context.Context, gw *gateway.Gateway, c *cluster.Cluster, timeout time.Duration) (serve context.Context, finish func()) {
	serve, stopServe := context.WithCancel(context.Background())
	giveUp, ended := make(chan struct{}), make(chan struct{})
	go func() { // ends when the drain is over, or is given up
		defer close(ended)
		defer stopServe()
		select {
		case <-ctx.Done():
		case <-giveUp:
			return
		}
		gw.Drain(timeout)
		stopServe()
		lctx, cancel := context.WithTimeout(context.Background(), exitLimit)
		_ = c.Leave(lctx)
		cancel()
	}()
	var once sync.Once
	return serve, func() {
		once.Do(func() { close(giveUp) })
		<-ended
	}
}

// exitLimit bounds each step of a process's exit after its drain: leaving the
// cluster, and the HTTP server's shutdown (which run at once).
const exitLimit = time.Second
