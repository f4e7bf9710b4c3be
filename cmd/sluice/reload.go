package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/agent"
	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/internal/auth"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

// livePolicy is the gateway's policy host, built anew from the file when a
// reload changes the plugins section, and swapped in whole: decisions in
// flight finish on the host they began on (wasm.Host.Close waits for them).
type livePolicy struct {
	log logger
	cur atomic.Pointer[policyGen]
}

// policyGen is one policy host with its own metrics, since a host's series
// are registered once per set.
type policyGen struct {
	host    *wasm.Host
	handler http.Handler
	set     *metrics.Set
	close   func()
	// inUse is held shared by every decision on the host and whole by swap
	// while it closes the host: a decision that began on a host being
	// replaced must not meet it closed, which would decide by the slot's
	// failure setting (open: allow) instead of by a policy.
	inUse sync.RWMutex
}

// newLivePolicy starts the policy host for cfg; its series are written
// with set's. stop closes the current host.
func newLivePolicy(ctx context.Context, cfg *fileConfig, log logger, set *metrics.Set) (lp *livePolicy, stop func(), err error) {
	lp = &livePolicy{log: log}
	gen, err := lp.build(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	lp.cur.Store(gen)
	set.RegisterMetricsWriter(func(w io.Writer) { lp.cur.Load().set.WritePrometheus(w) })
	return lp, func() { lp.cur.Load().close() }, nil
}

func (lp *livePolicy) build(ctx context.Context, cfg *fileConfig) (*policyGen, error) {
	set := metrics.NewSet()
	ph, closeHost, err := newPolicy(ctx, cfg, lp.log, set)
	if err != nil {
		return nil, err
	}
	return &policyGen{host: ph.host, handler: ph.host.Handler(), set: set, close: closeHost}, nil
}

// swap puts gen in and closes the host it replaces once the decisions on it
// have finished.
func (lp *livePolicy) swap(gen *policyGen) {
	old := lp.cur.Swap(gen)
	old.inUse.Lock()
	old.close()
	old.inUse.Unlock()
}

// use is the current host, held until done is called.
func (lp *livePolicy) use() (gen *policyGen, done func()) {
	for {
		g := lp.cur.Load()
		g.inUse.RLock()
		if lp.cur.Load() == g {
			return g, g.inUse.RUnlock
		}
		g.inUse.RUnlock() // swapped meanwhile: take the new one
	}
}

// Route is gateway.Policy's.
func (lp *livePolicy) Route(ctx context.Context, in *abi.RouteInput) (abi.RouteOutput, error) {
	g, done := lp.use()
	defer done()
	return g.host.Route(ctx, in)
}

// Throttle is gateway.Policy's.
func (lp *livePolicy) Throttle(ctx context.Context, in *abi.ThrottleInput) (abi.ThrottleOutput, error) {
	g, done := lp.use()
	defer done()
	return g.host.Throttle(ctx, in)
}

// Authorize is gateway.AuthPolicy's.
func (lp *livePolicy) Authorize(ctx context.Context, in *abi.AuthInput) (abi.AuthOutput, error) {
	g, done := lp.use()
	defer done()
	return g.host.Authorize(ctx, in)
}

// ServeHTTP serves /v1/plugins from the current host.
func (lp *livePolicy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lp.cur.Load().handler.ServeHTTP(w, r)
}

// options are the gateway's options for its policies and the config's auth
// section.
func (lp *livePolicy) options(cfg *fileConfig, log logger) ([]gateway.Option, error) {
	opts := []gateway.Option{
		gateway.WithPolicy(lp),
		gateway.WithHandler("GET /v1/plugins", lp),
		gateway.WithHandler("PUT /v1/plugins/{slot}", lp),
		gateway.WithHandler("POST /v1/plugins/{slot}/rollback", lp),
	}
	aopts, err := authOptions(cfg, log, lp)
	if err != nil {
		return nil, err
	}
	return append(opts, aopts...), nil
}

// reloader re-reads a gateway's config file (SIGHUP, POST /v1/config/reload)
// and applies the settings that can change live.
type reloader struct {
	path string
	dev  bool // sluice dev: webhooks may go unsigned
	log  logger
	pol  *livePolicy
	gw   *gateway.Gateway // set once the gateway is made
	ag   *agent.Agent     // sluice dev's own agent, whose pool limits change live; nil for sluice gateway

	mu  sync.Mutex  // one reload at a time
	cur *fileConfig // the file as last applied
	// start is the file the process started with: a setting that needs a
	// restart stays pending, reload after reload, until it is back to this.
	start *fileConfig
}

// reload is gateway.Reloader: the file is read and checked whole, and only
// when all of it is good is any of it applied.
func (r *reloader) reload(ctx context.Context) (gateway.ReloadReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep gateway.ReloadReport
	next, err := loadConfig(r.path)
	if err == nil && !r.dev {
		err = next.checkSigned()
	}
	if err != nil {
		return rep, err
	}
	if r.start == nil {
		r.start = r.cur // the file as the process started with it
	}
	// Auth keys change live only on a gateway that started with auth.
	authLive := r.start.Auth.Enabled() && next.Auth.Enabled() && r.start.Auth.Policy == next.Auth.Policy &&
		r.start.Auth.JWT.Configured() && next.Auth.JWT.Configured()
	live := func(p string) bool {
		switch {
		case under(p, "process"):
			return r.ag != nil
		case under(p, "webhooks"), under(p, "streams"), under(p, "gateway.corsOrigins"), under(p, "plugins"):
			return true
		case p == "gateway.apiToken":
			return next.Gateway.APIToken != ""
		case under(p, "auth.jwt"), under(p, "auth.headers"):
			return authLive
		}
		return false
	}
	rep.Applied, rep.Restart, err = splitChanges(r.start, r.cur, next, live)
	if err != nil {
		return rep, err
	}
	var newPlugins, newKeys, newHeaders, newPools bool
	for _, p := range rep.Applied {
		newPools = newPools || under(p, "process")
		newPlugins = newPlugins || under(p, "plugins")
		newKeys = newKeys || under(p, "auth.jwt")
		newHeaders = newHeaders || under(p, "auth.headers")
	}
	gs := next.gatewayConfig()
	l := gateway.Live{Webhooks: gs.Webhooks, Streams: gs.Streams, CORSOrigins: gs.CORSOrigins}
	if gs.APIToken != "" { // emptied, it waits for a restart (above)
		l.APIToken = &gs.APIToken
	}
	if l.CORSOrigins == nil {
		l.CORSOrigins = []string{} // the default again: every origin
	}
	if newKeys {
		if l.Verifier, err = auth.NewVerifier(next.Auth.JWT, r.log.With("component", "auth")); err != nil {
			return gateway.ReloadReport{}, fmt.Errorf("auth.jwt: %w", err)
		}
	}
	if newHeaders {
		l.AuthHeaders = next.Auth.Headers
		if l.AuthHeaders == nil {
			l.AuthHeaders = []string{"User-Agent", "Origin"} // gateway.Auth's default
		}
	}
	var gen *policyGen
	if newPlugins {
		if gen, err = r.pol.build(ctx, next); err != nil {
			return gateway.ReloadReport{}, fmt.Errorf("plugins: %w", err)
		}
	}
	pools := next.agentConfig("reload", "", true).Pools
	if newPools {
		if err := r.ag.CheckPools(pools); err != nil {
			if gen != nil {
				gen.close()
			}
			return gateway.ReloadReport{}, err
		}
	}
	if err := r.gw.Apply(l); err != nil {
		if gen != nil {
			gen.close()
		}
		return gateway.ReloadReport{}, err
	}
	if newPools {
		_ = r.ag.SetPools(pools) // checked above; nothing else changes them
	}
	if gen != nil {
		r.pol.swap(gen)
	}
	r.cur = next
	return rep, nil
}

// splitChanges lists next's changed settings: applied, those live (against
// cur, what runs) and restart, the others (against start, the file the
// process started with, so that one stays listed reload after reload until
// a restart).
func splitChanges(start, cur, next *fileConfig, live func(string) bool) (applied, restart []string, err error) {
	changed, err := configChanges(cur, next)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range changed {
		if live(p) {
			applied = append(applied, p)
		}
	}
	pending, err := configChanges(start, next)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pending {
		if !live(p) {
			restart = append(restart, p)
		}
	}
	return applied, restart, nil
}

// under reports whether path is prefix or a field or element below it.
func under(path, prefix string) bool {
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// onSignal reloads on every SIGHUP until ctx ends, logging what changed or
// why the file was refused; stop ends it and waits.
func (r *reloader) onSignal(ctx context.Context) (stop func()) {
	return onSIGHUP(ctx, func(ctx context.Context) {
		if r.path == "" {
			r.log.Warn("config reload: SIGHUP, but the process was started without --config")
			return
		}
		rep, err := r.reload(ctx)
		if err != nil {
			r.log.Error("config reload refused; the running configuration stays", "file", r.path, "err", err)
			return
		}
		logReload(r.log, rep.Applied, rep.Restart)
	})
}

// logReload logs a reload's changed settings: those applied, and those that
// wait for the next start.
func logReload(log logger, applied, restart []string) {
	log.Info("config reloaded", "applied", strings.Join(applied, ","), "restart", strings.Join(restart, ","))
	if len(restart) > 0 {
		log.Warn("config reload: these changed settings take effect at the next start", "fields", strings.Join(restart, ","))
	}
}

// onSIGHUP calls reload for every SIGHUP until ctx ends or stop is called.
// The signal is taken before onSIGHUP returns, so that one sent as soon as
// the process says it is ready does not end it (SIGHUP's default action).
func onSIGHUP(ctx context.Context, reload func(context.Context)) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // ends with ctx or stop
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			reload(ctx)
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

// configChanges lists the settings that differ between two files, by their
// full path (gateway.listen, webhooks[1].url, plugins.slots.throttle.config).
// A list whose length changed is named whole.
func configChanges(a, b *fileConfig) ([]string, error) {
	var out []string
	diffValue(reflect.ValueOf(*a.File), reflect.ValueOf(*b.File), "", &out)
	pa, err := pluginsConfig(a)
	if err != nil {
		return nil, err
	}
	pb, err := pluginsConfig(b)
	if err != nil {
		return nil, err
	}
	diffValue(reflect.ValueOf(pa), reflect.ValueOf(pb), "plugins", &out)
	slices.Sort(out)
	return out, nil
}

var yamlNodeType = reflect.TypeFor[yaml.Node]()

func diffValue(a, b reflect.Value, path string, out *[]string) {
	switch {
	case a.Type() == yamlNodeType:
		return // decoded by its owner (plugins) and compared as that
	case a.Kind() == reflect.Struct:
		for i := range a.NumField() {
			f := a.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			diffValue(a.Field(i), b.Field(i), joinPath(path, name), out)
		}
	case a.Kind() == reflect.Map:
		keys := map[string]reflect.Value{}
		for _, k := range append(a.MapKeys(), b.MapKeys()...) {
			keys[fmt.Sprint(k.Interface())] = k
		}
		for _, name := range slices.Sorted(maps.Keys(keys)) {
			av, bv := a.MapIndex(keys[name]), b.MapIndex(keys[name])
			if !av.IsValid() || !bv.IsValid() {
				*out = append(*out, joinPath(path, name))
				continue
			}
			diffValue(av, bv, joinPath(path, name), out)
		}
	case a.Kind() == reflect.Slice && a.Len() == b.Len():
		for i := range a.Len() {
			diffValue(a.Index(i), b.Index(i), path+"["+strconv.Itoa(i)+"]", out)
		}
	case !reflect.DeepEqual(a.Interface(), b.Interface()):
		*out = append(*out, path)
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
