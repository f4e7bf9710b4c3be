package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// proxyTarget is one way to reach the benchmark's service.
type proxyTarget struct {
	name      string
	http      string // base URL whose /ping reaches the service's /ping
	grpc      string // host:port whose health service is the service's
	metrics   string // the proxy's Prometheus URL, for its allocations ("" for direct)
	streamHdr bool   // name the stream in the calls
}

// BenchmarkProxy measures the edge proxy beside a direct call to the same
// service and, when SLUICE_BENCH_CADDY names a caddy binary, beside Caddy's
// reverse_proxy, in one run (docs/performance.md, "Edge proxy"):
//
//   - http-rate, grpc-rate: b.N small calls at 500 a second, one at a time;
//     latency p50 and p99.
//   - http-max, grpc-max: as many calls as 32 callers make; calls a second,
//     and the proxy's allocations per call (from its go_memstats_mallocs_total).
//
// sluice's path has a hop more than Caddy's: gateway, then agent, then service.
func BenchmarkProxy(b *testing.B) {
	svc := startBenchService(b)
	dir := b.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	writeFile(b, cfg, fmt.Sprintf(`gateway:
  proxy:
    routes:
      - {prefix: /api/, rewrite: /}
      - {prefix: /grpc.health.v1., service: grpc}
agent:
  services: {default: %q, grpc: %q}
`, svc.http, svc.grpc))
	_, base := startDev(b, "--config", cfg)
	targets := []proxyTarget{
		{name: "direct", http: "http://" + svc.http, grpc: svc.grpc},
		{name: "sluice", http: base + "/api", grpc: strings.TrimPrefix(base, "http://"), metrics: base + "/metrics", streamHdr: true},
	}
	if bin := os.Getenv("SLUICE_BENCH_CADDY"); bin != "" {
		targets = append(targets, startCaddy(b, bin, svc))
	}
	for _, tg := range targets {
		b.Run(tg.name+"/http-rate", func(b *testing.B) { benchAtRate(b, tg, httpCall(b, tg)) })
		b.Run(tg.name+"/grpc-rate", func(b *testing.B) { benchAtRate(b, tg, grpcCall(b, tg)) })
		b.Run(tg.name+"/http-max", func(b *testing.B) { benchAtMost(b, tg, httpCall(b, tg)) })
		b.Run(tg.name+"/grpc-max", func(b *testing.B) { benchAtMost(b, tg, grpcCall(b, tg)) })
	}
}

// benchService is the benchmark's service: /ping over HTTP and grpc-go's
// health service, in this process.
type benchService struct{ http, grpc string }

func startBenchService(b *testing.B) benchService {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "pong") })
	hs := &http.Server{Handler: mux}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer()) // "" is SERVING
	go func() { _ = hs.Serve(hl) }()
	go func() { _ = gs.Serve(gl) }()
	b.Cleanup(func() { _ = hs.Close(); gs.Stop() })
	return benchService{http: hl.Addr().String(), grpc: gl.Addr().String()}
}

// startCaddy runs Caddy with the same two routes: /api/ stripped to the
// service's HTTP, gRPC over h2c to its gRPC port.
func startCaddy(b *testing.B, bin string, svc benchService) proxyTarget {
	listen, admin := freeTCP(b), freeTCP(b)
	cfg := filepath.Join(b.TempDir(), "caddy.json")
	writeFile(b, cfg, fmt.Sprintf(`{"admin": {"listen": %q},
 "apps": {"http": {"servers": {"bench": {"listen": [%q], "protocols": ["h1", "h2c"],
  "routes": [
   {"match": [{"path": ["/grpc.health.v1.*"]}], "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": %q}],
     "transport": {"protocol": "http", "versions": ["h2c", "2"]}}]},
   {"match": [{"path": ["/api/*"]}], "handle": [{"handler": "rewrite", "strip_path_prefix": "/api"},
     {"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}]}]}}}}}`, admin, listen, svc.grpc, svc.http))
	cmd := exec.Command(bin, "run", "--config", cfg)
	out, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() { _, _ = io.Copy(io.Discard, out) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + listen + "/api/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("caddy did not answer within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return proxyTarget{name: "caddy", http: "http://" + listen + "/api", grpc: listen, metrics: "http://" + admin + "/metrics"}
}

func freeTCP(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// httpCall makes the target's small HTTP call.
func httpCall(b *testing.B, tg proxyTarget) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	return func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.http+"/ping", nil)
		if tg.streamHdr {
			req.Header.Set("X-Stream-Id", "bench-cam")
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

// grpcCall makes the target's unary gRPC call (health Check).
func grpcCall(b *testing.B, tg proxyTarget) func(context.Context) error {
	conn, err := grpc.NewClient(tg.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	return func(ctx context.Context) error {
		if tg.streamHdr {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-stream-id", "bench-cam")
		}
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
}

// benchAtRate makes b.N calls at 500 a second, one at a time, and reports the
// latency percentiles.
func benchAtRate(b *testing.B, tg proxyTarget, call func(context.Context) error) {
	ctx := context.Background()
	for range 20 { // connections up, mapping known
		if err := call(ctx); err != nil {
			b.Fatalf("%s: %v", tg.name, err)
		}
	}
	lats := make([]time.Duration, 0, b.N)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		start := time.Now()
		if err := call(ctx); err != nil {
			b.Fatalf("%s: %v", tg.name, err)
		}
		lats = append(lats, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lats)
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
}

// benchAtMost makes b.N calls from 32 callers and reports the calls a second,
// and the proxy's CPU time and allocations per call. The CPU time is the
// steadier figure on a shared machine: calls a second fall with whatever else
// runs, the CPU a call costs much less.
func benchAtMost(b *testing.B, tg proxyTarget, call func(context.Context) error) {
	ctx := context.Background()
	before := metricValue(b, tg.metrics, "go_memstats_mallocs_total")
	cpu0 := metricValue(b, tg.metrics, "process_cpu_seconds_total")
	b.SetParallelism(16) // × GOMAXPROCS (2) callers
	start := time.Now()
	var mu sync.Mutex
	var failed error
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(ctx); err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		}
	})
	b.StopTimer()
	if failed != nil {
		b.Fatalf("%s: %v", tg.name, failed)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	if tg.metrics != "" {
		b.ReportMetric(float64(metricValue(b, tg.metrics, "go_memstats_mallocs_total")-before)/float64(b.N), "proxy-allocs/call")
		cpu := metricValue(b, tg.metrics, "process_cpu_seconds_total") - cpu0
		b.ReportMetric(cpu*1e6/float64(b.N), "proxy-cpu-µs/call")
	}
}

// metricValue reads the unlabelled series name from a Prometheus page.
func metricValue(b *testing.B, url, name string) float64 {
	if url == "" {
		return 0
	}
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	b.Fatalf("%s has no %s", url, name)
	return 0
}
