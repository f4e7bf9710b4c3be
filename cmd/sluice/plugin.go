package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sluicegw/sluice/internal/wasmbuild"
	"github.com/sluicegw/sluice/sdk/abi"
	"github.com/sluicegw/sluice/wasm"
)

const pluginUsage = `usage:
  sluice plugin build DIR [-o OUT.wasm]               build a Go policy (a wasip1 reactor)
  sluice plugin test FILE.wasm --input decision.json  run one recorded decision offline
      [--config FILE]                                 (the slot's plugins.slots config when the decision has none)
  sluice plugin inspect FILE.wasm                     ABI version, exports, imports, size
`

// runPlugin is the policy author's tool.
func runPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	switch args[0] {
	case "build":
		return pluginBuild(args[1:], stdout, stderr)
	case "test":
		return pluginTest(ctx, args[1:], stdout, stderr)
	case "inspect":
		return pluginInspect(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "sluice plugin: unknown subcommand %q\n%s", args[0], pluginUsage)
	return 2
}

// splitArgs lets flags come before or after the one positional argument.
func splitArgs(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("want exactly one file or directory, got %d", len(pos))
	}
	return pos[0], nil
}

func pluginBuild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice plugin build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output file (default: DIR's base name + .wasm)")
	dir, err := splitArgs(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "sluice plugin build: %v\n%s", err, pluginUsage)
		return 2
	}
	if *out == "" {
		abs, _ := filepath.Abs(dir)
		*out = filepath.Base(abs) + ".wasm"
	}
	if err := wasmbuild.Build(dir, *out); err != nil {
		fmt.Fprintln(stderr, "sluice plugin build:", err)
		return 1
	}
	fi, _ := os.Stat(*out)
	fmt.Fprintf(stdout, "built %s (%d bytes): GOOS=wasip1 GOARCH=wasm go %s .\n", *out, fi.Size(), strings.Join(wasmbuild.Args, " "))
	return 0
}

// decisionFile is a recorded decision: the slot, its config values and the input.
type decisionFile struct {
	Slot   string            `json:"slot"`
	Config map[string]string `json:"config"`
	Input  json.RawMessage   `json:"input"`
}

// routeInputJSON is a recorded route input as people write it: headers and tags
// as JSON objects, where the ABI's Go types hold them as pairs.
type routeInputJSON struct {
	abi.RouteInput
	Headers    map[string]string `json:"headers"`
	Candidates []struct {
		abi.Candidate
		Tags map[string]string `json:"tags"`
	} `json:"candidates"`
}

func (j *routeInputJSON) input() *abi.RouteInput {
	in := j.RouteInput
	in.Headers = abi.PairsOf(j.Headers)
	in.Candidates = make([]abi.Candidate, len(j.Candidates))
	for i, c := range j.Candidates {
		in.Candidates[i] = c.Candidate
		in.Candidates[i].Tags = abi.PairsOf(c.Tags)
	}
	return &in
}

func pluginTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice plugin test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	input := fs.String("input", "", `decision JSON: {"slot":"route"|"throttle"|"auth","config":{...},"input":{...}}`)
	cfgPath := fs.String("config", "", "YAML config file: the slot's plugins.slots.SLOT.config, used when the decision has no config")
	file, err := splitArgs(fs, args)
	if err != nil || *input == "" {
		fmt.Fprintf(stderr, "sluice plugin test: a module and --input are required\n%s", pluginUsage)
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "sluice plugin test:", err)
		return 2
	}
	raw, err := os.ReadFile(*input)
	if err != nil {
		fmt.Fprintln(stderr, "sluice plugin test:", err)
		return 1
	}
	var d decisionFile
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		fmt.Fprintf(stderr, "sluice plugin test: %s: %v\n", *input, err)
		return 1
	}
	if d.Slot == "" {
		d.Slot = wasm.SlotRoute
	}
	if d.Slot != wasm.SlotRoute && d.Slot != wasm.SlotThrottle && d.Slot != wasm.SlotAuth {
		fmt.Fprintf(stderr, "sluice plugin test: slot %q is not route, throttle or auth\n", d.Slot)
		return 1
	}
	if d.Config == nil {
		wc, _ := pluginsConfig(cfg) // loadConfig checked it
		d.Config = wc.Slots[d.Slot].Config
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := wasm.New(ctx, withBuiltins(wasm.Config{Slots: map[string]wasm.SlotConfig{d.Slot: {Module: file, Config: d.Config, Failure: wasm.FailClosed, BreakerFailures: -1, Deadline: 10 * time.Second}}}, logger), logger, nil)
	if err != nil {
		fmt.Fprintln(stderr, "sluice plugin test:", err)
		return 1
	}
	defer h.Close(ctx)
	var out any
	switch d.Slot {
	case wasm.SlotRoute:
		var j routeInputJSON
		if err := json.Unmarshal(d.Input, &j); err != nil {
			fmt.Fprintf(stderr, "sluice plugin test: route input: %v\n", err)
			return 1
		}
		out, err = h.Route(ctx, j.input())
	case wasm.SlotAuth:
		var in abi.AuthInput
		if err := json.Unmarshal(d.Input, &in); err != nil {
			fmt.Fprintf(stderr, "sluice plugin test: auth input: %v\n", err)
			return 1
		}
		out, err = h.Authorize(ctx, &in)
	default:
		var in abi.ThrottleInput
		if err := json.Unmarshal(d.Input, &in); err != nil {
			fmt.Fprintf(stderr, "sluice plugin test: throttle input: %v\n", err)
			return 1
		}
		o, e := h.Throttle(ctx, &in)
		out, err = map[string]any{"action": o.Action.String(), "status": o.Status, "body": string(o.Body), "contentType": o.ContentType, "url": o.URL}, e
	}
	if err == nil {
		for _, st := range h.Status() {
			if st.Slot == d.Slot && st.Fallbacks > 0 {
				err = fmt.Errorf("the module failed: %s", st.LastError)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice plugin test:", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	return 0
}

func pluginInspect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice plugin inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file, err := splitArgs(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "sluice plugin inspect: %v\n%s", err, pluginUsage)
		return 2
	}
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "sluice plugin inspect:", err)
		return 1
	}
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, b)
	if err != nil {
		fmt.Fprintf(stderr, "sluice plugin inspect: %s is not a valid module: %v\n", file, err)
		return 1
	}
	fmt.Fprintf(stdout, "module   %s\nsize     %d bytes\n", file, len(b))
	// The ABI version and slot fit come from loading it the way the host does.
	for _, slot := range []string{wasm.SlotRoute, wasm.SlotThrottle, wasm.SlotAuth} {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		h, err := wasm.New(ctx, withBuiltins(wasm.Config{Slots: map[string]wasm.SlotConfig{slot: {Module: file, Pool: 1, Deadline: 10 * time.Second}}}, quiet), quiet, nil)
		if err != nil {
			fmt.Fprintf(stdout, "%-8s refused: %v\n", slot, err)
			continue
		}
		for _, st := range h.Status() {
			if st.Slot == slot {
				fmt.Fprintf(stdout, "%-8s fits: ABI v%d, sha256 %s\n", slot, st.Module.ABI, st.Module.SHA256)
			}
		}
		h.Close(ctx)
	}
	fmt.Fprintln(stdout, "exports:")
	names := func(ts []api.ValueType) string {
		var out []string
		for _, t := range ts {
			out = append(out, api.ValueTypeName(t))
		}
		return "(" + strings.Join(out, ", ") + ")"
	}
	exports := cm.ExportedFunctions()
	sorted := make([]string, 0, len(exports))
	for name := range exports {
		sorted = append(sorted, name)
	}
	slices.Sort(sorted)
	for _, name := range sorted {
		fmt.Fprintf(stdout, "  %s%s → %s\n", name, names(exports[name].ParamTypes()), names(exports[name].ResultTypes()))
	}
	fmt.Fprintln(stdout, "imports:")
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		fmt.Fprintf(stdout, "  %s.%s\n", mod, name)
	}
	return 0
}
