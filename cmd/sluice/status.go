package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicegw/sluice/internal/wire"
)

// runStatus prints every agent's process table, like `m2 status`, through a
// gateway's API.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "gateway HTTP address (default gateway.listen, else 127.0.0.1:8080)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	token := fs.String("token", os.Getenv("SLUICE_API_TOKEN"), "API token (default $SLUICE_API_TOKEN, else gateway.apiToken)")
	cfgPath := fs.String("config", "", "YAML config file: gateway.listen and gateway.apiToken")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice status:", err)
		return 2
	}
	*addr, *token = cmp.Or(*addr, cfg.gatewayConfig().Listen), cmp.Or(*token, cfg.Gateway.APIToken)
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status", nil)
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sluice status: %v (is a gateway running at %s? use --addr)\n", err, *addr)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "sluice status: %s: %s\n", resp.Status, body)
		return 1
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var st struct {
		Agents []wire.Status     `json:"agents"`
		Errors map[string]string `json:"errors"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintln(stderr, "sluice status:", err)
		return 1
	}
	printStatus(stdout, st.Agents, st.Errors, time.Now())
	return 0
}

// printStatus prints the summary line and the table. The summary's process
// counts are counted from the rows printed below it, by their STATE, so the
// two always agree.
func printStatus(w io.Writer, agents []wire.Status, errs map[string]string, now time.Time) {
	var sum wire.StatusSummary
	for _, a := range agents {
		for _, n := range a.Nodes {
			switch nodeState(n) {
			case "running":
				sum.Running++
			case "sleeping":
				sum.Sleeping++
			}
		}
		sum.Respawns += a.Summary.Respawns
		sum.MemActive += a.Summary.MemActive
		sum.MemAvailable += a.Summary.MemAvailable
	}
	fmt.Fprintf(w, "processes: %d running, %d sleeping, %d respawns   memory: %d MB active / %d MB available\n\n",
		sum.Running, sum.Sleeping, sum.Respawns, sum.MemActive>>20, sum.MemAvailable>>20)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tUPTIME\tCPU(%)\tRSS(MB)\tSTREAMS\tSTATE")
	for _, a := range agents {
		streams := 0
		for _, n := range a.Nodes {
			streams += n.Streams
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f\t%d\t%d\t%s\n", "agent/"+a.Agent, a.PID, uptime(now.Sub(a.Started)), a.CPU, a.RSS>>20, streams, a.State)
		for _, n := range a.Nodes {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%.1f\t%d\t%d\t%s\n", n.ID, n.PID, uptime(now.Sub(n.StartedAt)), n.CPU, n.RSS>>20, n.Streams, nodeState(n))
		}
		for _, p := range a.Pools {
			if p.Failed {
				fmt.Fprintf(tw, "  pool/%s\t-\t-\t-\t-\t-\tfailed: %s\n", p.Purpose, p.Reason)
			}
		}
	}
	for id, e := range errs {
		fmt.Fprintf(tw, "agent/%s\t-\t-\t-\t-\t-\tunreachable: %s\n", id, e)
	}
	tw.Flush()
}

// nodeState is a node's STATE in the table: M2's "running" for a process at
// work (serving streams) and "sleeping" for one up and idle, else its
// lifecycle state (starting, recycling), counted as neither.
func nodeState(n wire.NodeInfo) string {
	if n.State == "running" && n.Streams == 0 {
		return "sleeping"
	}
	return n.State
}

func uptime(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return d.String()
}

// runRotateGossipKey is `sluice ca gossip-key rotate`: it asks a gateway to move
// the whole cluster to a new gossip key (POST /v1/cluster/gossip-key, an admin
// call). Every member installs the new key, switches to it and drops the old
// one, with no member leaving; members keep it in gossip.keyring in their TLS
// directory for their next start.
func runRotateGossipKey(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice ca gossip-key rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "gateway HTTP address (default gateway.listen, else 127.0.0.1:8080)")
	token := fs.String("token", os.Getenv("SLUICE_API_TOKEN"), "API token or admin JWT (default $SLUICE_API_TOKEN, else gateway.apiToken)")
	cfgPath := fs.String("config", "", "YAML config file: gateway.listen and gateway.apiToken")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice ca gossip-key rotate:", err)
		return 2
	}
	*addr, *token = cmp.Or(*addr, cfg.gatewayConfig().Listen), cmp.Or(*token, cfg.Gateway.APIToken)
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/cluster/gossip-key", nil)
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sluice ca gossip-key rotate: %v (is a gateway running at %s? use --addr)\n", err, *addr)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "sluice ca gossip-key rotate: %s: %s\n", resp.Status, body)
		return 1
	}
	var rot struct{ Members, Removed int }
	_ = json.Unmarshal(body, &rot)
	fmt.Fprintf(stdout, "the cluster's gossip key is new: %d members switched, %d old keys removed\n", rot.Members, rot.Removed)
	return 0
}
