package main

import (
	"bytes"
	"context"
	"fmt"

	"github.com/VictoriaMetrics/metrics"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/gateway"
	"github.com/sluicegw/sluice/wasm"
)

// policyHost is the gateway's policies as the command wires them.
type policyHost struct {
	host *wasm.Host
}

func (p *policyHost) options() []gateway.Option {
	h := p.host.Handler()
	return []gateway.Option{
		gateway.WithPolicy(p.host),
		gateway.WithHandler("GET /v1/plugins", h),
		gateway.WithHandler("PUT /v1/plugins/{slot}", h),
		gateway.WithHandler("POST /v1/plugins/{slot}/rollback", h),
	}
}

// pluginsConfig decodes the config file's plugins section, refusing unknown fields.
func pluginsConfig(cfg *fileConfig) (wasm.Config, error) {
	var wc wasm.Config
	if cfg.Plugins.Kind == 0 {
		return wc, nil
	}
	raw, err := yaml.Marshal(&cfg.Plugins)
	if err != nil {
		return wc, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&wc); err != nil {
		return wc, fmt.Errorf("plugins: %w", err)
	}
	return wc, nil
}

// newPolicy starts the Wasm policy host with the built-in or configured modules.
func newPolicy(ctx context.Context, cfg *fileConfig, log logger, set *metrics.Set) (*policyHost, func(), error) {
	wc, err := pluginsConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	h, err := wasm.New(ctx, wc, log.With("component", "wasm"), set)
	if err != nil {
		return nil, nil, err
	}
	return &policyHost{host: h}, func() { _ = h.Close(context.Background()) }, nil
}
