// Command sluice is the one binary of a sluice cluster: a gateway, an agent, a
// node process, the operator's tools, and `sluice dev`, which runs a whole
// one-machine cluster in one command.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/sluicegw/sluice/cmd/sluice/internal/bench"
)

const usage = `sluice — edge proxy and media gateway with Wasm policies

Usage:
  sluice dev        run a gateway and an agent on this machine (try this first)
  sluice gateway    run a gateway: WHIP/WHEP, API, placement
  sluice agent      run an agent: node processes for the streams placed on it
  sluice node       run one node process (started by an agent, not by hand)
  sluice status     show the process table of every agent in the cluster
  sluice push       push VP8/Opus files or a live encoder to a gateway over MoQ (QUIC)
  sluice token      print a signed token granting publish / play on streams (auth)
  sluice ca         make the cluster CA and member certificates
  sluice plugin     build, test and inspect Wasm policies
  sluice bench      measure the media path against a minimal pion relay
  sluice version    print the version

Run 'sluice COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if path := os.Getenv("SLUICE_CPUPROFILE"); path != "" && len(os.Args) > 1 && os.Args[1] != "node" {
		// For profiling (README, Performance): a CPU profile of the whole run.
		if f, err := os.Create(path + "." + os.Args[1]); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	pprof.StopCPUProfile()
	stop()
	os.Exit(code)
}

// checkConfig loads a config file for its errors alone (sluice bench).
func checkConfig(path string) error {
	_, err := loadConfig(path)
	return err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "gateway":
		return runGateway(ctx, rest, stdout, stderr)
	case "agent":
		return runAgent(ctx, rest, stdout, stderr)
	case "node":
		return runNode(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "ca":
		return runCA(ctx, rest, stdout, stderr)
	case "plugin":
		return runPlugin(ctx, rest, stdout, stderr)
	case "push":
		return runPush(ctx, rest, stdout, stderr)
	case "bench":
		return bench.Run(ctx, rest, stdout, stderr, bench.Deps{CheckConfig: checkConfig, Trust: trustFor})
	case "bench-relay":
		return bench.RunRelay(ctx, rest, stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintln(stdout, "sluice", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
