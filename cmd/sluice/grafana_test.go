package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
)

const grafanaDashboard = "../../deploy/grafana/sluice.json"

// grafanaQuery is one target of a panel of the dashboard.
type grafanaQuery struct {
	panel, expr string
}

func grafanaQueries(t *testing.T) []grafanaQuery {
	t.Helper()
	b, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", grafanaDashboard, err)
	}
	var out []grafanaQuery
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			out = append(out, grafanaQuery{p.Title, q.Expr})
		}
	}
	if len(out) < 10 {
		t.Fatalf("the dashboard has %d queries; it lost its panels", len(out))
	}
	return out
}

var (
	promMatchersRE = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring)\s*\([^)]*\)`)
	promIdentRE    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*\s*\(?`)
	promKeywords   = []string{"by", "without", "on", "ignoring", "or", "and", "unless", "bool", "offset", "group_left", "group_right"}
)

// seriesNames are the metric names a PromQL expression reads: label
// matchers, ranges and grouping clauses removed, functions and keywords
// skipped.
func seriesNames(expr string) []string {
	var out []string
	for _, tok := range promIdentRE.FindAllString(promMatchersRE.ReplaceAllString(expr, " "), -1) {
		tok = strings.TrimSpace(tok)
		if strings.HasSuffix(tok, "(") || slices.Contains(promKeywords, tok) || strings.HasPrefix(tok, "__") {
			continue
		}
		out = append(out, tok)
	}
	return out
}

// pageNames are the sample names on a /metrics page (histograms by their
// _bucket, _sum and _count).
func pageNames(page string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(page) {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

// grafanaDev is a sluice dev with what each panel shows: a live stream
// played, a proxy route to an agent's service and a request on it. It returns
// the base URL.
func grafanaDev(t *testing.T, ctx context.Context) string {
	t.Helper()
	svc := startTestService(t, "grafana")
	cfg := writeConfig(t, fmt.Sprintf("agent:\n  services: {default: %q}\ngateway:\n  proxy:\n    routes:\n      - {prefix: /api/, rewrite: /echo/}\n", svc.http))
	_, base := startDev(t, "--config", cfg, "--moq", "127.0.0.1:0")
	liveStream(t, ctx, base, "grafana-live")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/frames", nil)
	req.Header.Set("X-Stream-Id", "grafana-live")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a proxied request for the live stream: %d", resp.StatusCode)
	}
	return base
}

// Every series the Grafana dashboard queries is one a live sluice dev exports.
func TestEveryGrafanaQueryNamesASeriesSluiceExports(t *testing.T) {
	queries := grafanaQueries(t)
	base := grafanaDev(t, ctxT(t, 60*time.Second))
	var page string
	until(t, "the stream's series", 10*time.Second, func() bool {
		_, page = get(t, base+"/metrics")
		return strings.Contains(page, `sluice_stream_info{stream="grafana-live"`)
	})
	have := pageNames(page)
	for _, q := range queries {
		names := seriesNames(q.expr)
		if len(names) == 0 {
			t.Errorf("panel %q: %s reads no series", q.panel, q.expr)
		}
		for _, n := range names {
			if !have[n] {
				t.Errorf("panel %q queries %s, which sluice dev does not export", q.panel, n)
			}
		}
	}
}

// The Grafana dashboard renders a live sluice dev: Debian's Prometheus scrapes
// it, and every panel's every query returns at least one series from
// Prometheus' HTTP API.
func TestTheGrafanaDashboardRendersTheSeriesOfALiveSluiceDev(t *testing.T) {
	prom := prometheusTool(t, "prometheus")
	queries := grafanaQueries(t)
	ctx := ctxT(t, 120*time.Second)
	base := grafanaDev(t, ctx)
	target := strings.TrimPrefix(base, "http://")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfg, "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: sluice\n    static_configs: [{targets: ['"+target+"']}]\n")
	listen := freeport.Loopback(t)
	runBackground(t, prom, nil, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--storage.tsdb.retention.time=1h")
	api := "http://" + listen
	until(t, "Prometheus ready", 30*time.Second, func() bool {
		resp, err := http.Get(api + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// $__rate_interval is Grafana's; 10s holds several 1 s scrapes.
	pending := queries
	until(t, "every panel's queries to return series", 60*time.Second, func() bool {
		var left []grafanaQuery
		for _, q := range pending {
			if n, err := promSeries(ctx, api, strings.ReplaceAll(q.expr, "$__rate_interval", "10s")); err != nil {
				t.Fatalf("panel %q: %s: %v", q.panel, q.expr, err)
			} else if n == 0 {
				left = append(left, q)
			}
		}
		pending = left
		return len(pending) == 0
	})
}

// promSeries is the number of series an instant query returns.
func promSeries(ctx context.Context, api, expr string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", r.Error)
	}
	return len(r.Data.Result), nil
}

// The name extraction the dashboard test relies on finds the series of a
// query and nothing else.
func TestSeriesNamesOfAPromQLExpression(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (slot, le) (rate(sluice_plugin_call_duration_seconds_bucket[$__rate_interval])))`: {"sluice_plugin_call_duration_seconds_bucket"},
		`sum(rate(a_total{kind="x"}[1m])) or vector(0)`:                                                                    {"a_total"},
		`sum by (stream) (b) * 8 / on (stream) c`:                                                                          {"b", "c"},
	} {
		if got := seriesNames(expr); !slices.Equal(got, want) {
			t.Errorf("seriesNames(%s) = %v, want %v", expr, got, want)
		}
	}
}
