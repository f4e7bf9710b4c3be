package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/caddyserver/certmagic"

	"github.com/sluicegw/sluice/agent"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/config"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/wasm"
)

type logger = *slog.Logger

// fileConfig is the parsed --config file with the conversions each part needs.
type fileConfig struct{ *config.File }

func loadConfig(path string) (*fileConfig, error) {
	f, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	fc := &fileConfig{f}
	// Validate the agent part now, so bad config fails every subcommand at start.
	if _, err := fc.agentConfig("check", "", false).Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := f.Auth.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if f.Auth.JWT.Configured() {
		// The keys are read now, so a missing key file fails at start.
		if _, err := auth.NewVerifier(f.Auth.JWT, nil); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	wc, err := pluginsConfig(fc)
	if _, set := wc.Slots[wasm.SlotAuth]; err == nil && set && !f.Auth.PolicyOn() {
		err = fmt.Errorf("plugins.slots.auth is set but auth.policy is off: set it to after or instead")
	}
	if err == nil {
		err = withBuiltins(wc, slog.Default()).Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return fc, nil
}

// gatewaySettings is gateway.Config plus what the command needs to serve it.
type gatewaySettings struct {
	gateway.Config
	Listen string
	// ACME, when it has domains, makes Listen an HTTPS listener with
	// certificates from an ACME CA (gateway.acme).
	ACME acmeSettings
	MoQ  config.MoQ
	// DrainTimeout bounds the drain after SIGTERM or SIGINT (gateway.drainTimeout).
	DrainTimeout time.Duration
}

func (c *fileConfig) gatewayConfig() gatewaySettings {
	g := c.Gateway
	s := gatewaySettings{
		Config: gateway.Config{
			ICEUDPPort: g.ICEUDPPort, ICEBind: g.ICEBind, ICEHosts: g.ICEHosts, StreamHeader: g.StreamHeader,
			CORSOrigins: g.CORSOrigins, MaxOfferBytes: g.MaxOfferBytes, APIToken: g.APIToken, RouteHeaders: g.RouteHeaders,
			ICEServers: iceServers(g.ICEServers), Scale: scaleFromConfig(g.Scale),
		},
		Listen:       g.Listen,
		ACME:         acmeFromConfig(g.ACME),
		MoQ:          g.MoQ,
		DrainTimeout: time.Duration(g.DrainTimeout),
	}
	for _, h := range c.Webhooks {
		s.Webhooks = append(s.Webhooks, gateway.Webhook{URL: h.URL, Events: h.Events, Secret: h.Secret})
	}
	for _, r := range c.Streams {
		s.Streams = append(s.Streams, gateway.StreamRule{ID: r.ID, Purpose: r.Purpose, Tags: r.Tags,
			MaxViewers: r.Limits.MaxViewers, MaxBitrate: r.Limits.MaxBitrate})
	}
	for _, r := range g.Proxy.Routes {
		s.ProxyRoutes = append(s.ProxyRoutes, gateway.ProxyRoute{Prefix: r.Prefix, Rewrite: r.Rewrite, Service: r.Service,
			Stream: r.Stream, Timeout: time.Duration(r.Timeout), MaxBody: r.MaxBody, Origin: r.Origin})
	}
	if s.Listen == "" {
		s.Listen = "127.0.0.1:8080"
	}
	if s.DrainTimeout == 0 {
		s.DrainTimeout = 30 * time.Second
	}
	return s
}

// checkSigned refuses a webhook without a secret: outside `sluice dev` a
// receiver must be able to tell the gateway's events from anyone's.
func (c *fileConfig) checkSigned() error {
	for i, h := range c.Webhooks {
		if h.Secret == "" {
			return fmt.Errorf("webhooks[%d].secret: missing (sluice gateway signs every event; a receiver checks Sluice-Signature with it)", i)
		}
	}
	return nil
}

// acmeFromConfig resolves gateway.acme's defaults (config.ACME documents
// them); the config package has already refused values that do not fit.
func acmeFromConfig(a config.ACME) acmeSettings {
	s := acmeSettings{
		Domains: a.Domains, Email: a.Email, CA: a.CA, CARoot: a.CARoot, Storage: a.Storage,
		HTTPListen: a.HTTPListen, RenewInterval: time.Duration(a.RenewInterval),
	}
	if s.CA == "" {
		s.CA = certmagic.LetsEncryptProductionCA
	}
	if s.Storage == "" {
		s.Storage = "./acme"
	}
	switch s.HTTPListen {
	case "":
		s.HTTPListen = ":80"
	case config.ListenOff:
		s.HTTPListen = ""
	}
	if a.Challenges == nil {
		s.HTTP01, s.TLSALPN01 = s.HTTPListen != "", true
	} else {
		s.HTTP01 = slices.Contains(a.Challenges, config.ChallengeHTTP01)
		s.TLSALPN01 = slices.Contains(a.Challenges, config.ChallengeTLSALPN01)
	}
	if s.RenewInterval == 0 {
		s.RenewInterval = certmagic.DefaultRenewCheckInterval
	}
	return s
}

// scaleFromConfig is gateway.scale as the gateway takes it.
func scaleFromConfig(s config.Scale) gateway.Scale {
	out := gateway.Scale{ScaleRule: gateway.ScaleRule{StreamsPerAgent: s.StreamsPerAgent, MaxAgents: s.MaxAgents}}
	for p, r := range s.Purposes {
		if out.Purposes == nil {
			out.Purposes = map[string]gateway.ScaleRule{}
		}
		out.Purposes[p] = gateway.ScaleRule(r)
	}
	return out
}

func iceServers(in []config.ICEServer) []gateway.ICEServer {
	var out []gateway.ICEServer
	for _, s := range in {
		out = append(out, gateway.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

func (c *fileConfig) agentConfig(id, api string, dev bool) agent.Config {
	a := c.Agent
	cfg := agent.Config{
		ID: id, API: a.API, MediaHost: a.MediaHost,
		QueueTimeout: time.Duration(a.QueueTimeout), QueueLimit: a.QueueLimit, DrainTimeout: time.Duration(a.DrainTimeout),
		MemoryUsage: agent.MemoryUsage{TotalUsableRatio: c.MemoryUsage.TotalUsableRatio, WorkingRatio: c.MemoryUsage.WorkingRatio},
		Services: agent.Services{Upstreams: a.Services, Hooks: agent.ServiceHooks{Add: a.ServiceHooks.Add, Remove: a.ServiceHooks.Remove},
			Idle: time.Duration(a.ServiceIdle)},
		Tags: a.Tags,
	}
	if api != "" {
		cfg.API = api
	}
	if dev && cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 3 * time.Second
	}
	ins := c.Inspection.Process
	cfg.Inspection = agent.Inspection{Enable: ins.Enable, Retention: ins.Retention, Schedule: ins.Schedule, Dir: ins.Dir}
	if len(c.Process) > 0 {
		cfg.Pools = map[string]agent.Pool{}
		for name, p := range c.Process {
			cfg.Pools[name] = agent.Pool{
				Memory: p.Memory, Concurrent: p.Concurrent, WaitQueue: p.WaitQueue, Respawnable: p.Respawnable,
				Keepalive: agent.Keepalive{MaxCount: p.Keepalive.MaxCount, MaxAge: time.Duration(p.Keepalive.MaxAge), TimeWait: time.Duration(p.Keepalive.TimeWait)},
				Recovery:  p.Recovery,
				Intensity: agent.Intensity{MaxRestarts: p.Intensity.MaxRestarts, Period: time.Duration(p.Intensity.Period)},
				Warm:      p.Warm,
				Procs:     p.Procs,
			}
		}
	}
	return cfg
}

// member is the resolved cluster identity of a process.
type member struct {
	name, bind, advertise string
	join                  []string
	tlsDir, tlsName       string
}

func (c *fileConfig) member(name, join, bind, tlsDir, tlsName string) member {
	m := member{name: c.Cluster.Name, bind: c.Cluster.Bind, advertise: c.Cluster.Advertise, join: c.Cluster.Join, tlsDir: c.TLS.Dir, tlsName: c.TLS.Name}
	if tlsDir != "" {
		m.tlsDir = tlsDir
	}
	if tlsName != "" {
		m.tlsName = tlsName
	}
	if name != "" {
		m.name = name
	}
	if m.name == "" {
		m.name = m.tlsName
	}
	if bind != "" {
		m.bind = bind
	}
	if join != "" {
		m.join = strings.Split(join, ",")
	}
	return m
}

// newAgent makes the agent of a process.
func newAgent(_ context.Context, cfg *fileConfig, c *cluster.Cluster, id *pki.Identity, api, agentID string, dev bool, log logger, set *metrics.Set) (*agent.Agent, error) {
	acfg := cfg.agentConfig(agentID, api, dev)
	return agent.New(acfg, c, id, log.With("component", "agent"), set)
}

// join loads the member's certificate and gossip key and joins the cluster with
// the given tags: what `sluice gateway` and `sluice agent` share.
func (m member) joinCluster(ctx context.Context, tags map[string]string, log logger) (*cluster.Cluster, *pki.Identity, error) {
	if m.tlsDir == "" || m.tlsName == "" {
		return nil, nil, fmt.Errorf("give the member certificate with --tls-dir and --tls-name (or tls.dir / tls.name); make it with `sluice ca issue`")
	}
	id, err := pki.LoadIdentity(m.tlsDir, m.tlsName)
	if err != nil {
		return nil, nil, err
	}
	key, err := pki.LoadGossipKey(m.tlsDir)
	if err != nil {
		return nil, nil, err
	}
	c, err := cluster.Start(ctx, cluster.Config{Name: m.name, Bind: m.bind, Advertise: m.advertise, Join: m.join, Key: key,
		KeyringFile: filepath.Join(m.tlsDir, pki.GossipKeyringFile), Tags: tags},
		log.With("component", "cluster"))
	if err != nil {
		return nil, nil, err
	}
	return c, id, nil
}

// moqTLS is the MoQ endpoint's certificate: the configured file pair, or nil
// for the endpoint's own self-signed one (which it allows on loopback only).
func (s gatewaySettings) moqTLS() (*tls.Config, error) {
	if s.MoQ.Cert == "" && s.MoQ.Key == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.MoQ.Cert, s.MoQ.Key)
	if err != nil {
		return nil, fmt.Errorf("gateway.moq.cert/key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// withMoQ fills the gateway's MoQ endpoint from gateway.moq.
func (s *gatewaySettings) withMoQ() error {
	if s.MoQ.Listen == "" {
		return nil
	}
	tc, err := s.moqTLS()
	if err != nil {
		return err
	}
	s.Config.MoQ = gateway.MoQConfig{Listen: s.MoQ.Listen, TLS: tc}
	return nil
}
