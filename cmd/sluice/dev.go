package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/loopback"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procs"
	"github.com/sluicegw/sluice/internal/wire"
)

// runDev runs a whole one-machine cluster: one serf member that is both gateway
// and agent, a self-made CA, built-in policies, everything on 127.0.0.1. Node
// processes are still separate child processes.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP address: WHIP, WHEP, API, dashboard")
	icePort := fs.Int("ice-port", 8189, "UDP port for every WebRTC session (0 picks one)")
	iceBind := fs.String("ice-bind", "", "address(es) the ICE port binds (overrides gateway.iceBind; default every local address, answering only this machine)")
	serfAddr := fs.String("serf", "127.0.0.1:7946", "gossip address (0 port picks one)")
	apiAddr := fs.String("agent-api", "127.0.0.1:7443", "agent API address (mutual TLS)")
	moqAddr := fs.String("moq", "", "MoQ endpoint UDP address, raw QUIC and WebTransport (default gateway.moq.listen, else "+devMoQ+")")
	cfgPath := fs.String("config", "", "YAML config file (optional)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr)
	go procs.Run(ctx, log) // one P while the process is quiet (internal/procs)
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 2
	}
	if *iceBind != "" {
		cfg.Gateway.ICEBind = *iceBind
	}
	moqListen, moqSet := devMoQListen(cfg, *moqAddr)
	for _, a := range []string{*httpAddr, *serfAddr, *apiAddr, moqListen} {
		if !loopback.Addr(a) {
			fmt.Fprintf(stderr, "sluice dev: %s is not a loopback address; dev mode listens on loopback only (use sluice gateway / sluice agent for a real cluster)\n", a)
			return 2
		}
	}
	ca, err := pki.NewCA("sluice dev CA")
	if err == nil {
		var id *pki.Identity
		id, err = ca.Issue("dev", []string{"127.0.0.1", "localhost"})
		if err == nil {
			if !moqSet && !freeport.Both(moqListen) {
				log.Warn("the default MoQ port is taken; using a free one", "default", moqListen)
				moqListen = "127.0.0.1:0"
			}
			cfg.Gateway.MoQ.Listen = moqListen
			return devRun(ctx, cfg, *cfgPath, id, *httpAddr, *icePort, *serfAddr, *apiAddr, stdout, stderr, log)
		}
	}
	fmt.Fprintln(stderr, "sluice dev:", err)
	return 1
}

func devRun(ctx context.Context, cfg *fileConfig, cfgPath string, id *pki.Identity, httpAddr string, icePort int, serfAddr, apiAddr string, stdout, stderr io.Writer, log logger) int {
	set := metrics.NewSet()
	serfAddr, err := resolvePort(serfAddr)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	c, err := cluster.Start(ctx, cluster.Config{
		Name: "dev", Bind: serfAddr, Dev: true,
		Tags: map[string]string{wire.TagRole: wire.RoleGateway + "," + wire.RoleAgent, wire.TagID: "dev"},
	}, log.With("component", "cluster"))
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	defer c.Close()

	ag, err := newAgent(ctx, cfg, c, id, apiAddr, "dev", true, log, set)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	pol, closePol, err := newLivePolicy(ctx, cfg, log, set)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	defer closePol()
	gcfg := cfg.gatewayConfig()
	gcfg.ID = "dev"
	if err := gcfg.withMoQ(); err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	gcfg.ICEUDPPort = icePort
	if icePort == 0 {
		gcfg.ICEUDPPort = -1
	}
	opts, err := pol.options(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	// The reload compares files: the one read at start, before the flags
	// changed it.
	asRead, err := loadConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	rl := &reloader{path: cfgPath, dev: true, log: log.With("component", "config"), pol: pol, cur: asRead, ag: ag}
	if cfgPath != "" {
		opts = append(opts, gateway.WithReloader(rl.reload))
	}
	gw, err := gateway.New(gcfg.Config, c, id, log.With("component", "gateway"), set, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	defer gw.Close()
	rl.gw = gw
	defer rl.onSignal(ctx)()

	var wg sync.WaitGroup
	actx, cancelAgent := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ag.Run(actx); err != nil {
			log.Error("agent stopped", "err", err)
		}
	}()
	defer func() { cancelAgent(); wg.Wait() }()

	drainTimeout := time.Duration(cfg.Gateway.DrainTimeout)
	if drainTimeout == 0 {
		drainTimeout = 3 * time.Second
	}
	serveCtx, finishDrain := drainOnSignal(ctx, gw, c, drainTimeout)
	defer finishDrain()
	err = serveHTTP(serveCtx, httpAddr, gw.Handler(), nil, "", log, func(a net.Addr) {
		// Ready means a stream can be placed: the agent's tags have reached the
		// gateway's view of the cluster.
		for deadline := time.Now().Add(5 * time.Second); gw.ServingAgents() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		base := "http://" + a.String()
		fmt.Fprintf(stdout, "sluice dev is ready\n  dashboard  %s/\n  WHIP       %s/whip/{stream}\n  WHEP       %s/whep/{stream}\n  API        %s/v1/cluster  %s/v1/streams  %s/v1/plugins\n  metrics    %s/metrics\n  ICE (UDP)  %s\n",
			base, base, base, base, base, base, base, gw.ICEAddr())
		if a := gw.MoQAddr(); a != nil {
			fmt.Fprintf(stdout, "  MoQ        moqt://%s (QUIC)  https://%s/ (WebTransport)  certificate http://%s/certificate.sha256\n", a, a, a)
		}
	})
	if err != nil {
		fmt.Fprintln(stderr, "sluice dev:", err)
		return 1
	}
	return 0
}

// resolvePort replaces a 0 port with a free one (serf needs the same port on TCP
// and UDP, so it cannot take 0 itself).
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// devMoQ is the MoQ endpoint of `sluice dev` unless configured.
const devMoQ = "127.0.0.1:4443"

// devMoQListen is the dev MoQ address: the flag, the config, or devMoQ; set
// says it was chosen, so a taken port is an error rather than replaced.
func devMoQListen(cfg *fileConfig, flagAddr string) (addr string, set bool) {
	switch {
	case flagAddr != "":
		return flagAddr, true
	case cfg.Gateway.MoQ.Listen != "":
		return cfg.Gateway.MoQ.Listen, true
	}
	return devMoQ, false
}
